//! Generated gRPC types and stubs of every Titan service, one module per `titan.<service>.v1`
//! package, plus the encoded descriptor set that servers hand to reflection. Generated code
//! stays here; services convert it to their domain types at their gRPC edge.
#![forbid(unsafe_code)]
#![allow(missing_debug_implementations)]

/// Every Titan proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("titan_descriptor");

pub mod abtesting {
    pub mod v1 {
        tonic::include_proto!("titan.abtesting.v1");
    }
}

pub mod analytics {
    pub mod v1 {
        tonic::include_proto!("titan.analytics.v1");
    }
}

pub mod campaign {
    pub mod v1 {
        tonic::include_proto!("titan.campaign.v1");
    }
}

pub mod chat {
    pub mod v1 {
        tonic::include_proto!("titan.chat.v1");
    }
}

pub mod coupon {
    pub mod v1 {
        tonic::include_proto!("titan.coupon.v1");
    }
}

pub mod driver {
    pub mod v1 {
        tonic::include_proto!("titan.driver.v1");
    }
}

pub mod flashsale {
    pub mod v1 {
        tonic::include_proto!("titan.flashsale.v1");
    }
}

pub mod fraud {
    pub mod v1 {
        tonic::include_proto!("titan.fraud.v1");
    }
}

pub mod gamification {
    pub mod v1 {
        tonic::include_proto!("titan.gamification.v1");
    }
}

pub mod livestream {
    pub mod v1 {
        tonic::include_proto!("titan.livestream.v1");
    }
}

pub mod ping {
    pub mod v1 {
        tonic::include_proto!("titan.ping.v1");
    }
}

pub mod privacy {
    pub mod v1 {
        tonic::include_proto!("titan.privacy.v1");
    }
}

pub mod pricing {
    pub mod v1 {
        tonic::include_proto!("titan.pricing.v1");
    }
}

pub mod router {
    pub mod v1 {
        tonic::include_proto!("titan.router.v1");
    }
}

pub mod shipping {
    pub mod v1 {
        tonic::include_proto!("titan.shipping.v1");
    }
}

pub mod tracking {
    pub mod v1 {
        tonic::include_proto!("titan.tracking.v1");
    }
}

pub mod videocall {
    pub mod v1 {
        tonic::include_proto!("titan.videocall.v1");
    }
}

pub mod warehouse {
    pub mod v1 {
        tonic::include_proto!("titan.warehouse.v1");
    }
}
