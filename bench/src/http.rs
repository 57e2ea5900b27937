//! One HTTP/1.1 keep-alive connection per simulated client, on hyper.
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{
    Method, Request,
    client::conn::http1::{SendRequest, handshake},
    header,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::Result;

/// A keep-alive connection to the API.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await; // ends when the sender is dropped or the server hangs up
        });
        Ok(Self { sender })
    }

    /// Sends one request and reads the whole answer; returns its status code.
    pub async fn send(&mut self, method: Method, path: &str, json: Option<Bytes>) -> Result<u16> {
        let mut builder = Request::builder().method(method).uri(path).header(header::HOST, "127.0.0.1");
        if json.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder.body(Full::new(json.unwrap_or_default()))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// A GET on a fresh connection, for the endpoints polled between and during loads.
pub async fn get_text(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = Request::get(path).header(header::HOST, "127.0.0.1").body(Empty::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
