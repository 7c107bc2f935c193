use std::process::ExitCode;

fn main() -> ExitCode {
    // The gate a server starts behind (an internal use, never typed by a person).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == pinstack::serve::supervisor::GATE)
    {
        return ExitCode::from(pinstack::serve::supervisor::run_gate(&args[2..]));
    }
    let (globals, command) = pinstack::cli::parse();
    match pinstack::run(&globals, command) {
        Ok(status) => ExitCode::from(status.code()),
        Err(err) if pinstack::exit::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(pinstack::exit::classify(&err).code())
        }
    }
}
