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
