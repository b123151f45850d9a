//! The codec every generated server and client of this crate uses: prost, with
//! one difference. tonic's `ProstCodec` answers a message it cannot decode with
//! `INTERNAL`, which blames the server (and counts as a server error in the
//! metrics) for the caller's malformed body. Here it is `INVALID_ARGUMENT`,
//! with prost's description of what was wrong and the `ErrorInfo` reason
//! [`MALFORMED_MESSAGE`](crate::reasons::MALFORMED_MESSAGE).

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::reasons;

/// `ProstCodec` whose decode errors are `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct ContractCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for ContractCodec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> Codec for ContractCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ContractDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ContractDecoder(self.0.decoder())
    }
}

/// Decodes with prost; a malformed message is `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct ContractDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for ContractDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            if status.code() == Code::Internal {
                Status::with_error_details(
                    Code::InvalidArgument,
                    format!(
                        "the request message is not a valid protobuf message: {}",
                        status.message()
                    ),
                    ErrorDetails::with_error_info(
                        reasons::MALFORMED_MESSAGE,
                        reasons::DOMAIN,
                        std::collections::HashMap::new(),
                    ),
                )
            } else {
                status
            }
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
