//! The router's gRPC edge: proto ↔ domain and errors → status; nothing else. No method needs
//! a token (see the proto): the interceptor still refuses an invalid one.

use std::sync::Arc;

use titan_kit::error::to_status;
use titan_proto::router::v1::{
    LookupManyRequest, LookupManyResponse, LookupRequest, LookupResponse, Route,
    router_service_server::{RouterService, RouterServiceServer},
};
use tonic::{Request, Response, Status};

use crate::app::Router;

const DOMAIN: &str = "router.titan.dev";

pub fn server(app: Arc<Router>) -> RouterServiceServer<Grpc> {
    RouterServiceServer::new(Grpc { app })
}

#[derive(Debug)]
pub struct Grpc {
    app: Arc<Router>,
}

#[tonic::async_trait]
impl RouterService for Grpc {
    async fn lookup(
        &self,
        request: Request<LookupRequest>,
    ) -> Result<Response<LookupResponse>, Status> {
        let (routed, table_version) = self
            .app
            .lookup(&request.get_ref().key)
            .map_err(|e| to_status(DOMAIN, &e))?;
        Ok(Response::new(LookupResponse {
            cell: routed.cell.to_string(),
            bucket: routed.bucket,
            table_version,
        }))
    }

    async fn lookup_many(
        &self,
        request: Request<LookupManyRequest>,
    ) -> Result<Response<LookupManyResponse>, Status> {
        let (routes, table_version) = self
            .app
            .lookup_many(&request.get_ref().keys)
            .map_err(|e| to_status(DOMAIN, &e))?;
        Ok(Response::new(LookupManyResponse {
            routes: routes
                .into_iter()
                .map(|r| Route {
                    cell: r.cell.to_string(),
                    bucket: r.bucket,
                })
                .collect(),
            table_version,
        }))
    }
}
