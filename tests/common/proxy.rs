//! A TCP proxy that partitions silently: while cut it forwards nothing in
//! either direction and accepts new connections without connecting them, as
//! a network that drops packets does (no RST, no FIN, no refusal). Restored,
//! every connection carries on where it stopped, as TCP does after a
//! partition heals; or only new connections flow, as after a NAT or load
//! balancer forgot the old flows, which then stay silent for good.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy to one upstream address.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: watch::Sender<State>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free local port, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let (state, open) = watch::channel(State::default());
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let open = open.clone();
                let id = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut gate = open.clone();
                    wait_open(&mut gate, id).await;
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, open.clone(), id),
                        pump(server_read, client_write, open.clone(), id)
                    );
                });
            }
        });
        Self { addr, state, accepted, task }
    }

    /// Cuts every connection, and every new one, silently.
    pub fn cut(&self) {
        self.state.send_modify(|s| s.cut = true);
    }

    /// Lets traffic flow again on every connection.
    pub fn restore(&self) {
        self.state.send_modify(|s| s.cut = false);
    }

    /// Lets traffic flow again on new connections only: the old ones stay
    /// silent for good, as flows a NAT or load balancer forgot.
    pub fn restore_new_only(&self) {
        let accepted_so_far = self.accepted.load(std::sync::atomic::Ordering::SeqCst);
        self.state.send_modify(|s| {
            s.cut = false;
            s.dead_before = accepted_so_far;
        });
    }
}

/// What flows.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    cut: bool,
    /// Connections numbered below this never flow again.
    dead_before: u64,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_open(gate: &mut watch::Receiver<State>, id: u64) {
    let _ = gate.wait_for(|s| !s.cut && id >= s.dead_before).await;
}

/// Copies `from` to `to`, holding everything while the proxy is cut (bytes
/// read just before a cut wait for the restore, like packets in flight).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: watch::Receiver<State>,
    id: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        wait_open(&mut gate, id).await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        wait_open(&mut gate, id).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
