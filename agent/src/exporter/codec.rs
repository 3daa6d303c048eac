//! Sending a request's bytes as they are: a gRPC codec for protobuf that
//! is already encoded, and a channel wrapper for messages that are already
//! compressed.
//!
//! Requests leave as the bytes the disk queue holds (see the `request`
//! module for why); responses are small and decoded with prost as usual.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::transport::channel::ResponseFuture;
use tonic_prost::ProstDecoder;

/// `Bytes` out, `R` (an `Export*ServiceResponse`) in.
pub(crate) struct PassThrough<R>(PhantomData<R>);

impl<R> Default for PassThrough<R> {
    fn default() -> Self {
        PassThrough(PhantomData)
    }
}

impl<R: prost::Message + Default + Send + 'static> Codec for PassThrough<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = BytesEncoder;
    type Decoder = ProstDecoder<R>;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<R> {
        ProstDecoder::default()
    }
}

pub(crate) struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.len());
        dst.put_slice(&item);
        Ok(())
    }
}

/// Request extension: the message is already compressed with this
/// `grpc-encoding` (a zstd queue record sent as it is).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Precompressed(pub &'static str);

/// The channel, plus what tonic has no API for: sending a message that is
/// already compressed. tonic frames a message with the "compressed" flag
/// only when it compressed it itself; for a [`Precompressed`] request this
/// sets the `grpc-encoding` header and the flag of the (single, unary)
/// message, which is all the gRPC wire format asks. Everything else —
/// framing, deadlines, statuses, trailers — stays tonic's.
#[derive(Clone, Debug)]
pub(crate) struct Wire(pub Channel);

impl tower::Service<http::Request<Body>> for Wire {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if let Some(Precompressed(encoding)) = request.extensions().get::<Precompressed>().copied()
        {
            request
                .headers_mut()
                .insert("grpc-encoding", http::HeaderValue::from_static(encoding));
            request = request.map(|body| {
                Body::new(FlagCompressed {
                    inner: body,
                    flagged: false,
                })
            });
        }
        self.0.call(request)
    }
}

/// Sets the compressed flag (the first byte of the gRPC message prefix) of
/// the first message.
struct FlagCompressed {
    inner: Body,
    flagged: bool,
}

impl http_body::Body for FlagCompressed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let Some(Ok(frame)) = frame else {
            return Poll::Ready(frame);
        };
        if self.flagged {
            return Poll::Ready(Some(Ok(frame)));
        }
        match frame.into_data() {
            Ok(data) if !data.is_empty() => {
                self.flagged = true;
                let mut data = BytesMut::from(data);
                data[0] = 1;
                Poll::Ready(Some(Ok(http_body::Frame::data(data.freeze()))))
            }
            Ok(data) => Poll::Ready(Some(Ok(http_body::Frame::data(data)))),
            Err(frame) => Poll::Ready(Some(Ok(frame))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
