//! `meshd`: the daemon (`meshd up`) and the command line that administers it. See `meshd --help` and
//! [`meshd::cli`].

fn main() -> std::process::ExitCode {
    meshd::cli::main()
}
