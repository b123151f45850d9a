//! The baseline: a bare tonic unary echo server and client on one HTTP/2
//! connection, 200-byte requests, in this process.

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::driver::{Stats, drive};

mod pb {
    #![allow(
        clippy::pedantic,
        missing_debug_implementations,
        reason = "generated code"
    )]
    tonic::include_proto!("bench.echo.v1");
}

use pb::echo_service_client::EchoServiceClient;
use pb::echo_service_server::{EchoService, EchoServiceServer};
use pb::{EchoRequest, EchoResponse};

#[derive(Debug, Default)]
struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(EchoResponse {
            payload: request.into_inner().payload,
        }))
    }
}

/// Serves echo on a free loopback port and drives it with `concurrency` callers.
pub async fn run(
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Stats> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServiceServer::new(Echo))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    let client = EchoServiceClient::connect(format!("http://{addr}")).await?;
    let payload = vec![7u8; 200];
    let stats = drive(concurrency, warmup, duration, move |_| {
        let mut client = client.clone();
        let payload = payload.clone();
        async move {
            client
                .echo(EchoRequest { payload })
                .await
                .map(drop)
                .map_err(|s| format!("{:?}", s.code()))
        }
    })
    .await;
    let _ = stop.send(());
    let _ = server.await;
    Ok(stats)
}
