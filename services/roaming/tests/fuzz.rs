//! Every RPC of every service, fed arbitrary bytes and messages of its own
//! request type with arbitrary field values (`proto::testing::message_for`),
//! over real gRPC against `roaming up`, directly on the service ports and
//! through the gateway, as each kind of caller: never a panic, never a hang,
//! never `UNKNOWN` or `INTERNAL`, always a clear answer; and the mesh still
//! serves afterwards.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes};
use prost::Message as _;
use support::*;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Raw bytes in and out: the request is sent exactly as generated.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        Self
    }

    fn decoder(&mut self) -> Self::Decoder {
        Self
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `(path, request type, server streaming)` of every RPC of the contract.
fn methods() -> Vec<(String, String, bool)> {
    let set = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut all = Vec::new();
    for file in set.file {
        let package = file.package().to_owned();
        for service in &file.service {
            for m in &service.method {
                all.push((
                    format!("/{package}.{}/{}", service.name(), m.name()),
                    m.input_type().trim_start_matches('.').to_owned(),
                    m.server_streaming(),
                ));
            }
        }
    }
    all
}

/// The code of one call; a stream is judged by its first answer.
async fn call(channel: &Channel, token: &str, path: &str, streaming: bool, body: Vec<u8>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("the server still accepts calls");
    let mut request = with_token(token, Bytes::from(body));
    request.set_timeout(Duration::from_secs(5));
    let path = path.parse().unwrap();
    if streaming {
        match grpc.server_streaming(request, path, RawCodec).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
                    Ok(Err(status)) => status.code(),
                    // A message, or an open stream with nothing to say yet.
                    Ok(Ok(_)) | Err(_) => Code::Ok,
                }
            }
            Err(status) => status.code(),
        }
    } else {
        match grpc.unary(request, path, RawCodec).await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        }
    }
}

/// A small deterministic generator, so a failure names the input that made it.
struct Seeds(u64);

impl Seeds {
    fn next(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                self.0.to_be_bytes()[0]
            })
            .collect()
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rpc_answers_arbitrary_input_with_a_clear_error() {
    let m = TestMesh::start().await;
    let d = m.direct();
    let gateway = channel(m.mesh().gateway.addr).await;
    let port_of = |path: &str| -> Option<SocketAddr> {
        let service = path.trim_start_matches('/').split('/').next()?;
        Some(match service {
            s if s == proto::service_names::RESERVATION => d.reservation,
            s if s == proto::service_names::PAYMENT => d.payment,
            s if s == proto::service_names::RENTAL => d.rental,
            s if s == proto::service_names::PARKING => d.parking,
            s if s == proto::service_names::VIEW => d.view,
            _ => return None,
        })
    };
    let callers = [
        token(ALICE),
        token(OPS),
        token(STAFF_T1),
        token(GATE),
        token(As("rental", "service", None)),
        token(As("reservation", "service", None)),
    ];
    let mut seeds = Seeds(0x2545_f491_4f6c_dd1d);
    let mut calls = 0;
    for (path, input, streaming) in methods() {
        // The gateway answers AuthService itself; the rest also directly.
        let direct = match port_of(&path) {
            Some(addr) => Some(channel(addr).await),
            None => None,
        };
        for i in 0..24 {
            let seed = seeds.next(160);
            let body = if i % 3 == 0 {
                seed.clone()
            } else {
                proto::testing::message_for(&input, &seed).expect("request type in the contract")
            };
            let who = &callers[i % callers.len()];
            let via = if i % 2 == 0 {
                direct.as_ref().unwrap_or(&gateway)
            } else {
                &gateway
            };
            let code = call(via, who, &path, streaming, body.clone()).await;
            calls += 1;
            assert!(
                !matches!(code, Code::Unknown | Code::Internal | Code::DataLoss),
                "{path} answered {code:?} to {body:02x?}"
            );
        }
    }
    assert!(calls > 500, "{calls} calls");
    // Still serving: a normal reservation goes through.
    m.reservation()
        .await
        .reserve_roaming(req(ALICE, roaming_request("after-fuzz", 3, 4)))
        .await
        .unwrap();
    m.stop().await;
}
