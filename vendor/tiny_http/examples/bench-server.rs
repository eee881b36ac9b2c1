//! Minimal server for load tests: `cargo run --release --example bench-server -- [inline|pool]`.
//! `inline` answers on the connection thread; `pool` hands each request to 4 worker threads
//! over a channel (one wake-up there, one back to the connection thread).
use std::net::TcpListener;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use tiny_http::{Dispatch, Handler, Limits, Request, Response, Server};

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "inline".into());
    let addr = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "127.0.0.1:8088".into());
    let handler: Handler = if mode == "pool" {
        let (tx, rx) = mpsc::sync_channel::<Request>(64);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..4 {
            let rx = rx.clone();
            thread::spawn(move || loop {
                let rq = rx.lock().unwrap().recv();
                match rq {
                    Ok(rq) => drop(rq.respond(Response::from_string("hello"))),
                    Err(_) => break,
                }
            });
        }
        let tx = Mutex::new(tx);
        Arc::new(move |rq| drop(tx.lock().unwrap().send(rq)))
    } else {
        Arc::new(|rq: Request| drop(rq.respond(Response::from_string("hello"))))
    };
    let listener = TcpListener::bind(&addr).unwrap();
    let server =
        Server::from_listener(listener, Limits::default(), Dispatch::Handler(handler)).unwrap();
    eprintln!("listening on {addr} ({mode})");
    loop {
        thread::park();
        let _ = &server;
    }
}
