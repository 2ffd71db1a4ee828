//! The external programs the lab runs (`ip`, `iptables`, `bird`, `ping`, and meshd itself inside a
//! namespace), each bounded in time and failing with what it printed.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use meshd_wg::sys::clock;

/// How long one short command (`ip`, `iptables`, a meshd CLI call) may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A program the lab needs, and the Debian package that has it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

pub const IP: Tool = Tool {
    program: "ip",
    package: "iproute2",
};
pub const IPTABLES: Tool = Tool {
    program: "iptables",
    package: "iptables",
};
pub const BIRD: Tool = Tool {
    program: "bird",
    package: "bird2",
};
pub const BIRDC: Tool = Tool {
    program: "birdc",
    package: "bird2",
};
pub const PING: Tool = Tool {
    program: "ping",
    package: "iputils-ping",
};

/// The first executable `program` on `PATH`.
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Fails naming every missing program and the packages to install.
pub fn require(tools: &[Tool]) -> anyhow::Result<()> {
    let missing: Vec<&Tool> = tools.iter().filter(|t| find(t.program).is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let programs: Vec<String> = missing.iter().map(|t| format!("`{}`", t.program)).collect();
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.dedup();
    bail!(
        "{} not found on PATH; the lab needs {}: apt-get install {}",
        programs.join(", "),
        if missing.len() == 1 { "it" } else { "them" },
        packages.join(" ")
    )
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Ran {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The command, its status and what it printed, for an error message.
    pub fn describe(&self) -> String {
        let mut text = format!("`{}` failed ({})", self.command, self.status);
        for (name, out) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if !out.trim().is_empty() {
                text.push_str(&format!("\n  {name}: {}", out.trim_end().replace('\n', "\n    ")));
            }
        }
        text
    }
}

/// The command line as a person would type it.
pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to its end, or kills it after `timeout` (an error). Any exit status is returned.
pub fn run(cmd: &mut Command, timeout: Duration) -> anyhow::Result<Ran> {
    let command = display(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{command}`"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let Some(status) = wait(&mut child, timeout)? else {
        bail!("`{command}` did not finish within {timeout:?} and was killed");
    };
    // Whatever the command started in the background may keep the pipes open: bounded patience.
    let patience = Duration::from_secs(2);
    Ok(Ran {
        command,
        status,
        stdout: collect(stdout, patience),
        stderr: collect(stderr, patience),
    })
}

/// [`run`], and a non-zero exit is an error carrying what the command printed. Returns stdout.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> anyhow::Result<String> {
    let ran = run(cmd, timeout)?;
    if !ran.success() {
        return Err(anyhow!(ran.describe()));
    }
    Ok(ran.stdout)
}

/// `log` opened for appending, twice: for a child's standard output and its standard error.
pub fn append_to(log: &Path) -> anyhow::Result<(File, File)> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let err = out.try_clone()?;
    Ok((out, err))
}

/// Runs `cmd` with its output appended to `log` (for programs that start a daemon, which keeps
/// whatever it inherited open), bounded by `timeout`.
pub fn run_logged(cmd: &mut Command, log: &Path, timeout: Duration) -> anyhow::Result<ExitStatus> {
    let command = display(cmd);
    let (out, err) = append_to(log)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot run `{command}`"))?;
    match wait(&mut child, timeout)? {
        Some(status) => Ok(status),
        None => bail!("`{command}` did not finish within {timeout:?} and was killed"),
    }
}

/// Waits for `child` at most `timeout`; kills and reaps it after that (`None`).
fn wait(child: &mut Child, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
    let deadline = clock::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if clock::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

fn collect(rx: mpsc::Receiver<Vec<u8>>, patience: Duration) -> String {
    String::from_utf8_lossy(&rx.recv_timeout(patience).unwrap_or_default()).into_owned()
}

/// `ip ARGS`, which must succeed; returns stdout.
pub fn ip(args: &[&str]) -> anyhow::Result<String> {
    run_ok(Command::new(IP.program).args(args), TIMEOUT)
}

/// `ip -n NS ARGS`, which must succeed; returns stdout.
pub fn ip_in(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    run_ok(Command::new(IP.program).args(["-n", ns]).args(args), TIMEOUT)
}

/// A command that runs `program` inside the namespace `ns` (`ip netns exec NS PROGRAM`).
pub fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(IP.program);
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// The last `lines` lines of a log file, indented, or a note that it is empty or missing.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) if !bytes.is_empty() => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let shown = &all[all.len().saturating_sub(lines)..];
            format!("--- last lines of {} ---\n{}", path.display(), shown.join("\n"))
        }
        Ok(_) => format!("({} is empty)", path.display()),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_its_package() {
        let e = require(&[Tool {
            program: "meshd-no-such-program",
            package: "meshd-pkg",
        }])
        .unwrap_err()
        .to_string();
        assert!(e.contains("`meshd-no-such-program`"), "{e}");
        assert!(e.contains("apt-get install meshd-pkg"), "{e}");
    }

    #[test]
    fn commands_are_bounded_and_report_their_output() {
        let ran = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            TIMEOUT,
        )
        .unwrap();
        assert_eq!(ran.status.code(), Some(3));
        let text = ran.describe();
        assert!(
            text.contains("out") && text.contains("err") && text.contains("sh -c"),
            "{text}"
        );
        let started = clock::now();
        let e = run(Command::new("sleep").arg("5"), Duration::from_millis(100)).unwrap_err();
        assert!(e.to_string().contains("was killed"), "{e}");
        assert!(clock::now() - started < Duration::from_secs(3));
    }
}
