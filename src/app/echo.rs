//! `/echo`: every text or binary message comes back unchanged, on one
//! thread, with no hub. Conformance suites and benchmarks talk to it.

use crate::websocket::session::{Ended, LinkError, Session};

/// Runs the echo until the connection ends.
pub fn serve_echo(mut session: Session) -> Ended {
    loop {
        let message = match session.next_message() {
            Ok(message) => message,
            Err(ended) => return ended,
        };
        match session.link().send(message) {
            Ok(()) => {}
            // The core refuses once our close went out: the reading loop
            // will see the connection end.
            Err(LinkError::Closing) => {}
            Err(e) => {
                session.link().shutdown();
                return Ended::WriteFailed(e.to_string());
            }
        }
    }
}
