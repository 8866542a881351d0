//! Child processes of a test. [`ChildGuard`] kills and reaps its process when dropped, so a
//! failing assertion or a panic never leaves a daemon or a crash child running.

use std::io;
use std::process::{Child, ExitStatus};

/// Owns a child process; dropping it sends SIGKILL and waits for the process to exit.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    reaped: bool,
}

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard { child, reaped: false }
    }

    /// The process, to take its pipes or ask whether it is still running.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the process has already ended, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        self.reaped |= status.is_some();
        Ok(status)
    }

    /// How the process ended, if it has, without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.try_wait().ok().flatten()
    }

    /// Asks the process to stop (SIGTERM) and waits up to `grace` for it; then SIGKILL.
    pub fn terminate(&mut self, grace: std::time::Duration) -> io::Result<ExitStatus> {
        if !self.reaped {
            // kill(1): the pid is our unreaped child, so it names no other process.
            let _ = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let deadline = std::time::Instant::now() + grace;
            while std::time::Instant::now() < deadline {
                if let Some(status) = self.try_wait()? {
                    return Ok(status);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        self.kill()
    }

    /// Sends SIGKILL (on Unix, `Child::kill` is SIGKILL) and waits for the process to end.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        if !self.reaped {
            // The process may have ended on its own meanwhile; `wait` below reports that.
            let _ = self.child.kill();
        }
        let status = self.child.wait()?;
        self.reaped = true;
        Ok(status)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
