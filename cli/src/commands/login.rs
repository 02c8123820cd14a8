//! `rbuild login` / `logout`: credentials for a registry, kept in the docker config.json.

use crate::flags::hiargs::{Global, Login, Logout, Password};
use crate::shared::{registry, runtime};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

/// Checks the credentials with the registry, then stores them.
pub fn login(global: &Global, login: &Login) -> Result<ExitCode> {
    let server = login.server.as_str();
    let username = match &login.username {
        Some(u) => u.clone(),
        None => {
            if !std::io::stdin().is_terminal() || login.password == Password::Stdin {
                bail!("no username: give -u USERNAME");
            }
            eprint!("Username: ");
            let mut s = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut s)
                .context("cannot read the username")?;
            s.trim().to_string()
        }
    };
    if username.is_empty() {
        bail!("the username is empty");
    }
    let password = read_password(&login.password)?;
    if password.is_empty() {
        bail!("the password is empty");
    }
    let runtime = runtime::start(None)?;
    let client = registry::client(&global.insecure_registries)?;
    runtime
        .block_on(client.login(server, &username, &password))
        .with_context(|| format!("login to {server} failed"))?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// Forgets the credentials of a registry.
pub fn logout(global: &Global, logout: &Logout) -> Result<ExitCode> {
    let server = logout.server.as_str();
    let runtime = runtime::start(None)?;
    let client = registry::client(&global.insecure_registries)?;
    let removed = runtime
        .block_on(client.logout(server))
        .with_context(|| format!("logout from {server} failed"))?;
    if removed {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The password: `-p`, else stdin with `--password-stdin` (trailing newline
/// dropped, as docker does), else a prompt.
fn read_password(password: &Password) -> Result<String> {
    match password {
        Password::Stdin => {
            let mut s = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut s)
                .context("cannot read the password from stdin")?;
            Ok(s.trim_end_matches(['\n', '\r']).to_string())
        }
        Password::Given(p) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            Ok(p.clone())
        }
        Password::Prompt => {
            if !std::io::stdin().is_terminal() {
                bail!("no password: give -p, --password-stdin, or run on a terminal");
            }
            eprint!("Password: ");
            let line = read_line_without_echo().context("cannot read the password");
            eprintln!();
            Ok(line?.trim_end_matches(['\n', '\r']).to_string())
        }
    }
}

/// A line from the terminal on stdin, not shown as it is typed.
fn read_line_without_echo() -> std::io::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).map_err(std::io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(std::io::Error::from)?;
    let mut s = String::new();
    let read = stdin.lock().read_line(&mut s);
    // Echo comes back whatever the read did.
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &saved).map_err(std::io::Error::from);
    read?;
    restored?;
    Ok(s)
}
