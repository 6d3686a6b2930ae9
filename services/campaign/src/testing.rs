//! Test helpers of the campaign service, for its own tests and the end-to-end suite: a real
//! SMTP server (aiosmtpd, `TITAN_TEST_AIOSMTPD`, which `cargo xtask test` installs) of the
//! caller's own, writing each message to a maildir that is read back and parsed.

use std::{collections::HashMap, path::PathBuf};

use base64::Engine;
use titan_kit::testing::eventually;

/// A real SMTP server (aiosmtpd) of the test's own, writing each message to a maildir;
/// stopped when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

/// A received message: its headers (unfolded) and its decoded body.
#[derive(Debug, Clone)]
pub struct Mail {
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// aiosmtpd's controller with an authenticator that takes one login (AUTH over the plain
/// loopback connection) and refuses mail from a client that has not logged in.
const WITH_LOGIN: &str = r#"
import logging, sys, time, warnings
# The loopback test relay takes AUTH without TLS on purpose: no warning about it.
warnings.simplefilter("ignore")
logging.disable(logging.WARNING)
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult
host, port, maildir, user, password = sys.argv[1:6]
def check(server, session, envelope, mechanism, data):
    ok = data.login.decode() == user and data.password.decode() == password
    # handled=False: aiosmtpd answers 535 itself (handled=True would leave the reply to us).
    return AuthResult(success=ok, handled=False)
c = Controller(Mailbox(maildir), hostname=host, port=int(port), authenticator=check,
               auth_required=True, auth_require_tls=False)
c.start()
while True:
    time.sleep(3600)
"#;

impl SmtpServer {
    /// Starts one on a free loopback port and waits until it accepts connections.
    pub async fn start() -> Self {
        Self::spawn(None).await
    }

    /// Starts one that accepts mail only after `AUTH` with this login.
    pub async fn start_with_login(user: &str, password: &str) -> Self {
        Self::spawn(Some((user, password))).await
    }

    async fn spawn(login: Option<(&str, &str)>) -> Self {
        let python = std::env::var("TITAN_TEST_AIOSMTPD").unwrap_or_else(|_| {
            panic!(
                "TITAN_TEST_AIOSMTPD is not set: run the tests with `cargo xtask test`, which installs \
                 aiosmtpd 1.4.6 into ~/.cache/titan and exports its python"
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("maildir");
        let mut command = tokio::process::Command::new(python);
        match login {
            None => command
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(dir.path().join("mail")),
            Some((user, password)) => command
                .args(["-c", WITH_LOGIN, "127.0.0.1", &port.to_string()])
                .arg(dir.path().join("mail"))
                .args([user, password]),
        };
        let child = command.kill_on_drop(true).spawn().expect("start aiosmtpd");
        eventually("aiosmtpd to listen", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop)
        })
        .await;
        Self {
            port,
            dir,
            _child: child,
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.dir.path().join("mail").join(sub)) {
                out.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        }
        out
    }

    pub fn count(&self) -> usize {
        self.files().len()
    }

    pub fn messages(&self) -> Vec<Mail> {
        self.files()
            .iter()
            .map(|p| parse(&std::fs::read_to_string(p).expect("read message")))
            .collect()
    }
}

fn parse(raw: &str) -> Mail {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").expect("headers and body");
    let mut headers: HashMap<String, String> = HashMap::new();
    let mut last = String::new();
    for line in head.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(v) = headers.get_mut(&last) {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            last = k.trim().to_ascii_lowercase();
            headers.insert(last.clone(), v.trim().to_owned());
        }
    }
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let body = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(|b| String::from_utf8(b).expect("utf-8 body"))
        .expect("base64 body");
    Mail { headers, body }
}
