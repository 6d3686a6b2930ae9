//! Ping's gRPC edge: proto ↔ domain and errors → status; nothing else.

use titan_kit::{auth, error::to_status, wire::timestamp};
use titan_proto::ping::v1::{
    EmitRequest, EmitResponse, PingRequest, PingResponse,
    ping_service_server::{PingService, PingServiceServer},
};
use tonic::{Request, Response, Status};

use crate::app::{PingStore, Pinger};

const DOMAIN: &str = "ping.titan.dev";

pub fn server<S: PingStore>(app: Pinger<S>) -> PingServiceServer<Grpc<S>> {
    PingServiceServer::new(Grpc { app })
}

#[derive(Debug)]
pub struct Grpc<S> {
    app: Pinger<S>,
}

#[tonic::async_trait]
impl<S: PingStore> PingService for Grpc<S> {
    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let caller = auth::caller(&request)?;
        let pong = self
            .app
            .ping(caller, &request.get_ref().message)
            .map_err(|e| to_status(DOMAIN, &e))?;
        Ok(Response::new(PingResponse {
            message: pong
                .message
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default(),
            user_id: pong.caller.user_id,
            roles: pong.caller.roles,
            cell: pong.cell,
            served_at: Some(timestamp(pong.served_at)),
        }))
    }

    async fn emit(&self, request: Request<EmitRequest>) -> Result<Response<EmitResponse>, Status> {
        let caller = auth::caller(&request)?;
        let body = request.get_ref();
        let receipt = self
            .app
            .emit(&caller, &body.request_id, &body.message)
            .await
            .map_err(|e| to_status(DOMAIN, &e))?;
        Ok(Response::new(EmitResponse {
            event_id: receipt.event_id.to_string(),
            emitted_at: Some(timestamp(receipt.emitted_at)),
        }))
    }
}
