//! The server: the listener, one thread per connection, the connection cap.
//!
//! Reading order: [`Server::run`] accepts connections and gives each its
//! own named thread (or hands it to the [`doorman`] when the server is
//! full); [`connection::handle_connection`] reads requests off it one after
//! another; [`router::route`] decides what each is for, and the endpoints
//! in `app/` answer.

pub mod connection;
pub mod doorman;
pub mod router;
pub mod waiting;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::app::broker::start_reader;
use crate::app::fanout::start_fanout;
use crate::app::ticker::start_ticker;
use crate::app::{App, Counted};
use crate::config::{Config, CONNECTION_STACK};
use connection::handle_connection;
use doorman::{start_doorman, Refusal};
use waiting::Waiting;

pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    /// Connections waiting for a request: the ones that may make room.
    waiting: Arc<Waiting>,
}

/// A server running on a background thread (see [`Server::spawn`]).
pub struct RunningServer {
    pub addr: SocketAddr,
    pub app: Arc<App>,
}

impl RunningServer {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Server {
    /// Opens the listening socket. With port 0 the OS picks a free port;
    /// [`Server::local_addr`] tells which. The error names what failed
    /// (the public directory, or the address), ready to print.
    pub fn bind(config: Config) -> io::Result<Server> {
        let app = App::new(config)?;
        let (host, port) = (app.config.host.as_str(), app.config.port);
        let listener = TcpListener::bind((host, port)).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {host}:{port}: {e}"))
        })?;
        Ok(Server {
            listener,
            app: Arc::new(app),
            waiting: Arc::default(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn app(&self) -> Arc<App> {
        Arc::clone(&self.app)
    }

    /// Runs the server on a background thread and returns at once: how the
    /// integration tests start one on port 0.
    pub fn spawn(self) -> io::Result<RunningServer> {
        let addr = self.local_addr()?;
        let app = self.app();
        thread::Builder::new()
            .name("accept".into())
            .spawn(move || self.run())?;
        Ok(RunningServer { addr, app })
    }

    /// The accept loop. Runs until the process ends.
    pub fn run(self) {
        let (app, waiting) = (self.app, self.waiting);
        start_fanout(&app);
        start_reader(&app);
        start_ticker(&app);
        let doorman = start_doorman(Arc::clone(&app));
        for incoming in self.listener.incoming() {
            let stream = match incoming {
                Ok(stream) => stream,
                Err(e) => {
                    // Out of file descriptors (EMFILE) or a connection reset
                    // before we got to it: log, pause briefly, keep serving.
                    app.log(format_args!("accept failed: {e}"));
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let id = app.next_connection_id();
            if app.slots_in_use() >= app.config.max_connections && !make_room(&app, &waiting) {
                let _ = doorman.send((stream, Refusal::AtLimit));
                continue;
            }
            // Counted here, before its thread exists: counting inside the
            // thread would let a burst of accepts overshoot the cap.
            let counted = app.open_connections.enter();
            spawn_connection(stream, id, counted, &app, &waiting, &doorman);
        }
    }
}

/// At the cap: closes the connection that has waited longest for a request,
/// if one is waiting (see `waiting.rs`). Its thread ends at once; until it
/// has, the count is one over the cap.
fn make_room(app: &App, waiting: &Waiting) -> bool {
    let Some(evicted) = waiting.evict_longest_idle() else {
        return false;
    };
    app.log(format_args!(
        "client {}: closed to make room: {:.1} s without a whole request, at the limit of {} connections",
        evicted.id,
        evicted.idle.as_secs_f64(),
        app.config.max_connections
    ));
    true
}

/// Starts the connection's thread, `conn-ID`, with a small stack.
///
/// `spawn` can fail (no memory for a stack, a thread limit). The socket
/// waits in a slot so that, if it does, we still have it and the doorman
/// can answer 503 instead of dropping it without a word.
fn spawn_connection(
    stream: TcpStream,
    id: u64,
    counted: Counted,
    app: &Arc<App>,
    waiting: &Arc<Waiting>,
    doorman: &Sender<(TcpStream, Refusal)>,
) {
    let slot = Arc::new(Mutex::new(Some(stream)));
    let thread_slot = Arc::clone(&slot);
    let thread_app = Arc::clone(app);
    let thread_waiting = Arc::clone(waiting);
    let spawned = thread::Builder::new()
        .name(format!("conn-{id}"))
        .stack_size(CONNECTION_STACK)
        .spawn(move || {
            let stream = thread_slot.lock().ok().and_then(|mut s| s.take());
            if let Some(stream) = stream {
                handle_connection(stream, id, &thread_app, &thread_waiting);
            }
            // The connection is over: it stops counting.
            drop(counted);
        });
    if let Err(e) = spawned {
        app.log(format_args!(
            "client {id}: could not start a thread ({e}): answering 503"
        ));
        if let Some(stream) = slot.lock().ok().and_then(|mut s| s.take()) {
            let _ = doorman.send((stream, Refusal::NoThread));
        }
    }
}
