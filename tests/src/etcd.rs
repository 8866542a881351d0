//! A real etcd for the tests of the etcd arbiter: a single-member cluster on free loopback ports
//! in a temporary directory, killed when the guard drops. The binary comes from Debian's
//! etcd-server package, which scripts/test installs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One etcd process, killed on drop.
pub struct Etcd {
    child: Child,
    /// `HOST:PORT` of the client API.
    pub client: String,
    dir: PathBuf,
    /// The temporary directory of [`Etcd::start`], removed on drop.
    temp: Option<tempfile::TempDir>,
}

fn free_port() -> std::io::Result<u16> {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port())
}

impl Etcd {
    /// Starts etcd in a temporary directory and waits until it reports itself healthy. Panics
    /// (with how to install it) when the binary is missing.
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut etcd = Etcd::launch(Path::new("etcd"), dir.path()).unwrap_or_else(|e| {
            panic!("cannot start `etcd` ({e}); scripts/test installs it (apt-get install etcd-server)")
        });
        etcd.temp = Some(dir);
        etcd
    }

    /// Starts the etcd binary `bin` with its data and log in `dir` (created if missing) and waits
    /// until it reports itself healthy (at most 30 s).
    pub fn launch(bin: &Path, dir: &Path) -> std::io::Result<Etcd> {
        std::fs::create_dir_all(dir)?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.join("etcd.log"))?;
        let child = Command::new(bin)
            .args(["--name", "test", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}"), "--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut etcd = Etcd { child, client: format!("127.0.0.1:{client_port}"), dir: dir.to_path_buf(), temp: None };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !etcd.healthy() {
            if let Ok(Some(status)) = etcd.child.try_wait() {
                return Err(std::io::Error::other(format!("etcd exited with {status}: {}", etcd.log())));
            }
            if Instant::now() >= deadline {
                return Err(std::io::Error::other(format!("etcd did not become healthy in 30 s: {}", etcd.log())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(etcd)
    }

    /// The client URL, as `etcd_endpoints` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.client)
    }

    /// etcd's own health check (`GET /health` on the client port).
    pub fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(&self.client) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!("GET /health HTTP/1.0\r\nHost: {}\r\n\r\n", self.client);
        let mut body = String::new();
        s.write_all(req.as_bytes()).is_ok() && s.read_to_string(&mut body).is_ok() && body.contains("\"true\"")
    }

    /// Sends `signal` (`-STOP`, `-CONT`, ...) to the process: SIGSTOP makes a hung etcd that
    /// keeps its connections.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Kills the process now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
