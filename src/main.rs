use std::process::ExitCode;

fn main() -> ExitCode {
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
