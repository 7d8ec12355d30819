//! `<DB>_PASSWORD_COMMAND`: a command whose standard output is the password,
//! run for every new connection. It runs through the system shell (`sh -c`,
//! `cmd /C` on Windows), as git's credential helpers do, so pipes and
//! quoting work as written (`vault kv get -field=pw secret/db`,
//! `aws secretsmanager ... | jq -r .password`). One trailing newline is
//! removed. Its standard error is discarded and its output is never part of
//! a message (either may hold the secret); a failure names the setting and
//! the exit status. At the deadline the command's whole process group is
//! killed.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::credentials::{fingerprint, Fetched, Login, Provider, Secret, Target};
use crate::error::{Error, Result};

pub struct PasswordCommand {
    command: String,
}

impl PasswordCommand {
    pub fn new(command: String) -> Self {
        PasswordCommand { command }
    }

    fn shell(&self) -> Command {
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(&self.command);
            // Its own group, so a timeout kills what it started too.
            c.process_group(0);
            c
        }
        #[cfg(not(unix))]
        {
            let mut c = Command::new("cmd");
            c.arg("/C").arg(&self.command);
            c
        }
    }
}

fn kill(child: &mut Child) {
    #[cfg(unix)]
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the process group this child leads.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Provider for PasswordCommand {
    fn identity(&self) -> String {
        format!("command:{:x}", fingerprint(&self.command))
    }

    fn fetch(&self, _target: &Target, origin: &str, timeout: Duration) -> Result<Fetched> {
        let deadline = Instant::now() + timeout;
        let mut child = self
            .shell()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::config(format!("{origin}: could not start the command ({e})")))?;
        let Some(mut stdout) = child.stdout.take() else {
            kill(&mut child);
            return Err(Error::config(format!("{origin}: no output pipe")));
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let read = stdout.read_to_end(&mut out).map(|_| out);
            let _ = tx.send(read);
        });
        let timed_out = || {
            Error::config(format!(
                "{origin}: the command gave no password within {timeout:?} and was stopped \
                 (CREDENTIAL_TIMEOUT); run it by hand to see why it is slow"
            ))
        };
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    kill(&mut child);
                    return Err(timed_out());
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => {
                    kill(&mut child);
                    return Err(Error::config(format!(
                        "{origin}: could not wait for the command ({e})"
                    )));
                }
            }
        };
        if !status.success() {
            let how = match status.code() {
                Some(code) => format!("exit status {code}"),
                None => "killed by a signal".to_owned(),
            };
            return Err(Error::config(format!(
                "{origin}: the command failed ({how}); its output is not shown (it may hold \
                 the secret): run it by hand to see why"
            )));
        }
        // Something it left running may hold the pipe open: wait no longer
        // than the deadline.
        let left = deadline.saturating_duration_since(Instant::now());
        let out = match rx.recv_timeout(left) {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                return Err(Error::config(format!(
                    "{origin}: could not read the command's output ({e})"
                )))
            }
            Err(_) => return Err(timed_out()),
        };
        let Ok(text) = String::from_utf8(out) else {
            return Err(Error::config(format!(
                "{origin}: the command's output is not UTF-8 text"
            )));
        };
        let password = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        if password.is_empty() {
            return Err(Error::config(format!(
                "{origin}: the command printed nothing; it must print the password on its \
                 standard output"
            )));
        }
        Ok(Fetched {
            login: Login::Password(Secret::new(password.to_owned())),
            expires: None,
        })
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn run(command: &str, timeout: Duration) -> Result<Fetched> {
        let target = Target {
            host: None,
            port: None,
            user: None,
        };
        PasswordCommand::new(command.to_owned()).fetch(&target, "K_PASSWORD_COMMAND", timeout)
    }

    fn password(f: Fetched) -> String {
        match f.login {
            Login::Password(p) => p.expose().to_owned(),
            Login::AccessToken(_) => panic!("a password was expected"),
        }
    }

    #[test]
    fn output_without_its_newline() {
        let got = run("printf 's3cret value\\n'", Duration::from_secs(5)).unwrap();
        assert_eq!(password(got), "s3cret value");
        let got = run("printf 'a\\r\\n'", Duration::from_secs(5)).unwrap();
        assert_eq!(password(got), "a");
    }

    #[test]
    fn failures_never_show_the_output() {
        let e = run("echo leaked; exit 3", Duration::from_secs(5)).unwrap_err();
        assert!(e.message.contains("exit status 3"), "{}", e.message);
        assert!(!e.message.contains("leaked"));
        let e = run("true", Duration::from_secs(5)).unwrap_err();
        assert!(e.message.contains("printed nothing"), "{}", e.message);
    }

    #[test]
    fn a_slow_command_is_stopped_at_the_deadline() {
        let started = Instant::now();
        let e = run("sleep 30", Duration::from_millis(300)).unwrap_err();
        assert!(e.message.contains("within"), "{}", e.message);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
