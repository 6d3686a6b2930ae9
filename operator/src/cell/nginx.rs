//! Renders the nginx config of a cell's RTMP server: `application live` with `on_publish` /
//! `on_publish_done` calling the livestream service (which admits or refuses a stream key, and
//! renames an admitted stream to its id), and, when the cell has object storage, `record` into
//! the shared media volume for the recorder sidecar to upload; `application hls` receives the
//! renamed stream pushed over loopback and writes HLS into the same volume, served over HTTP.
//!
//! HLS sits in an application of its own because nginx-rtmp's HLS module sees a publish before
//! the notify module renames it (and `record` and `push` after): written by `live` itself,
//! playlists would carry the secret stream key in their URLs; pushed to `hls`, they carry the
//! stream's id.
//!
//! The pid file and temp paths are relative, so nginx runs from any writable prefix (`-p`): an
//! emptyDir in the pod, a temporary directory in the test that runs `nginx -t` on this config.
//! nginx resolves the callback host when it starts: until the livestream service's Service
//! exists, the RTMP pod restarts.
//!
//! nginx-rtmp calls back over plain HTTP only. In a cell with TLS, where the livestream service
//! answers nothing else, its callbacks go to a server of nginx's own on loopback, which carries
//! them on over TLS and verifies the service's certificate against the cell's CA.

use std::fmt::Write as _;

/// Where HLS segments and recordings live in the pod (the shared media volume).
pub const MEDIA_DIR: &str = "/var/lib/titan-media";

/// Subdirectory of [`MEDIA_DIR`] for HLS playlists and segments.
pub const HLS_DIR: &str = "hls";
/// Subdirectory of [`MEDIA_DIR`] for finished recordings.
pub const RECORDINGS_DIR: &str = "recordings";
/// The RTMP application that writes HLS, fed by `live`'s push of each admitted stream.
pub const HLS_APP: &str = "hls";
/// Path of the livestream service's publish callback.
pub const ON_PUBLISH_PATH: &str = "/rtmp/publish";
/// Path of the livestream service's publish-done callback.
pub const ON_PUBLISH_DONE_PATH: &str = "/rtmp/publish-done";

/// What the nginx config depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxSettings {
    /// Path of the dynamic RTMP module, or `None` for an nginx with the module built in.
    pub module_path: Option<String>,
    /// Base URL of the livestream service's HTTP port (`http://livestream.ns.svc:8080`, or
    /// `https://` in a cell with TLS).
    pub callback_base: String,
    /// In a cell with TLS, the CA bundle file the livestream service's certificate is verified
    /// against, and the loopback port of the server that carries the callbacks to it.
    pub callback_tls: Option<CallbackTls>,
    /// Whether streams are recorded (the cell has object storage to upload them to).
    pub record: bool,
    /// Directory of the shared media volume (HLS and recordings); nginx creates the HLS
    /// directory in it when it starts, and `nginx -t` already checks it can.
    pub media_dir: String,
    /// Port of RTMP ingest.
    pub rtmp_port: i32,
    /// Port HLS is served on.
    pub http_port: i32,
}

/// How callbacks reach a livestream service that serves TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackTls {
    /// The CA bundle file (PEM).
    pub ca_file: String,
    /// The loopback port nginx-rtmp calls back to.
    pub proxy_port: i32,
}

/// The `nginx.conf` of `cell`'s RTMP server.
pub fn render(cell: &str, settings: &NginxSettings) -> String {
    let NginxSettings {
        module_path,
        callback_base,
        callback_tls,
        record,
        media_dir,
        rtmp_port,
        http_port,
    } = settings;
    let mut out = format!(
        "# nginx.conf of cell {cell}, rendered by titan-operator: edits are overwritten.\n\
         # Run with -p <writable dir>/: the pid file and temp paths are relative to it.\n"
    );
    if let Some(path) = module_path {
        let _ = writeln!(out, "load_module {path};");
    }
    let recording = if *record {
        format!(
            "\n            # Finished recordings are uploaded to object storage by the recorder sidecar.\n            \
             record all;\n            \
             record_path {media_dir}/{RECORDINGS_DIR};\n            \
             record_unique on;\n"
        )
    } else {
        String::new()
    };
    let (callback, callback_proxy) = match callback_tls {
        None => (callback_base.clone(), String::new()),
        Some(CallbackTls {
            ca_file,
            proxy_port,
        }) => (
            format!("http://127.0.0.1:{proxy_port}"),
            format!(
                r#"
    # nginx-rtmp calls back over plain HTTP: this server carries its callbacks to the
    # livestream service over TLS, verifying its certificate against the cell's CA.
    server {{
        listen 127.0.0.1:{proxy_port};

        location /rtmp/ {{
            proxy_pass {callback_base};
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca_file};
            proxy_ssl_server_name on;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
        }}
    }}
"#
            ),
        ),
    };
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        r#"daemon off;
worker_processes auto;
pid nginx.pid;
error_log stderr warn;

events {{
    worker_connections 1024;
}}

rtmp {{
    server {{
        listen {rtmp_port};
        chunk_size 4096;

        application live {{
            live on;
            # The livestream service admits a stream key with a 2xx and refuses it otherwise.
            notify_method post;
            on_publish {callback}{ON_PUBLISH_PATH};
            on_publish_done {callback}{ON_PUBLISH_DONE_PATH};
            # Viewers watch HLS; RTMP playback is not offered.
            allow play 127.0.0.1;
            deny play all;
            # Under the name the service gave it (the stream's id), never the key.
            push rtmp://127.0.0.1:{rtmp_port}/{HLS_APP};
{recording}        }}

        application {HLS_APP} {{
            live on;
            # Only the push of `live` above publishes here.
            allow publish 127.0.0.1;
            deny publish all;
            allow play 127.0.0.1;
            deny play all;

            hls on;
            hls_path {media_dir}/{HLS_DIR};
            hls_fragment 2s;
            hls_playlist_length 20s;
        }}
    }}
}}

http {{
    access_log off;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;

    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }}

    server {{
        listen {http_port};

        location /hls/ {{
            alias {media_dir}/{HLS_DIR}/;
            add_header Cache-Control no-cache;
            add_header Access-Control-Allow-Origin *;
        }}

        location = /healthz {{
            return 200 "ok\n";
        }}
    }}
{callback_proxy}}}
"#
    );
    out
}
