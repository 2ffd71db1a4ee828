fn main() {
    eprintln!("meshd: the daemon is not built yet; see the README for what works today");
    std::process::exit(2);
}
