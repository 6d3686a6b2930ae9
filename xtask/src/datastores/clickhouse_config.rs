//! Rewrites ClickHouse's packaged `config.xml` for a private server: every path moved into a
//! state directory, our ports, loopback only, https with our certificate, no other extra
//! listeners. Pure text in, text out.
//!
//! A small element scanner, not an XML library: the packaged file is plain (comments, a CDATA
//! block inside a comment, attributes without `>`), and editing the text in place keeps its
//! comments and layout, so the written copy diffs cleanly against the original.

use std::path::Path;

use anyhow::{Result, bail};

/// What to change; element paths are `/`-separated below the root (`logger/log`), so the
/// `<path>` inside `<distributed_ddl>` is not the top-level `<path>`.
#[derive(Debug, Default, Clone)]
pub struct Edits {
    /// Elements whose text is replaced, or inserted into their parent when missing.
    pub set: Vec<(String, String)>,
    /// Elements removed wherever they occur.
    pub remove: Vec<String>,
    /// Elements added at the end of the root (after the removals).
    pub append: Vec<(String, String)>,
}

/// The ports a private server listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub http: u16,
    /// The same HTTP interface over TLS, for the tests of kit's https client.
    pub https: u16,
    pub tcp: u16,
    pub interserver: u16,
}

/// The certificate (chain) and key the https port presents.
#[derive(Debug, Clone, Copy)]
pub struct Certificate<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// Listeners of some ClickHouse versions that a private test server must not open: they would
/// take fixed ports or need certificates of their own.
const EXTRA_LISTENERS: &[&str] = &[
    "tcp_port_secure",
    "interserver_https_port",
    "mysql_port",
    "postgresql_port",
    "grpc_port",
    "tcp_with_proxy_port",
    "prometheus",
];

impl Edits {
    /// The edits for a server whose files all live under `dir` (`users_xml` being the copy of
    /// users.xml placed there), serving https with `tls`.
    pub fn private_server(dir: &Path, users_xml: &Path, ports: Ports, tls: Certificate) -> Self {
        // ClickHouse wants directory paths to end with a slash.
        let sub = |name: &str| format!("{}/", dir.join(name).display());
        let log = |name: &str| dir.join("log").join(name).display().to_string();
        let mut set = vec![
            ("http_port", ports.http.to_string()),
            ("https_port", ports.https.to_string()),
            (
                "openSSL/server/certificateFile",
                tls.cert.display().to_string(),
            ),
            (
                "openSSL/server/privateKeyFile",
                tls.key.display().to_string(),
            ),
            ("tcp_port", ports.tcp.to_string()),
            ("interserver_http_port", ports.interserver.to_string()),
            ("path", sub("data")),
            ("tmp_path", sub("tmp")),
            ("user_files_path", sub("user_files")),
            ("format_schema_path", sub("format_schemas")),
            ("users_config", users_xml.display().to_string()),
            ("logger/log", log("clickhouse-server.log")),
            ("logger/errorlog", log("clickhouse-server.err.log")),
            // Tests and the local cell see the same clock on every machine, whatever
            // /etc/localtime says (or whether it exists).
            ("timezone", "UTC".to_owned()),
        ];
        // A private server needs no 5 GB mark cache; the packaged value is sized for a host of
        // its own.
        set.push(("mark_cache_size", (256u64 << 20).to_string()));
        let mut remove: Vec<String> = EXTRA_LISTENERS.iter().map(|s| (*s).to_owned()).collect();
        // The package listens on ::1 too, which fails where IPv6 is off; one loopback address
        // is all tests need.
        remove.push("listen_host".to_owned());
        // The packaged Diffie-Hellman file does not exist; the ECDHE key exchanges that rustls
        // offers need none.
        remove.push("openSSL/server/dhParamsFile".to_owned());
        Edits {
            set: set.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            remove,
            append: vec![("listen_host".to_owned(), "127.0.0.1".to_owned())],
        }
    }
}

/// A complete element found by the scanner.
#[derive(Debug)]
struct Element {
    /// Names from below the root down to this element, joined with `/`.
    path: String,
    name: String,
    start: usize,
    end: usize,
    /// Where its closing tag starts (== `end` for `<x/>`), for inserting children.
    close_start: usize,
}

struct Scan {
    elements: Vec<Element>,
    root_close_start: usize,
}

fn scan(xml: &str) -> Result<Scan> {
    let bytes = xml.as_bytes();
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut elements = Vec::new();
    let mut root_close_start = None;
    let mut i = 0;
    let skip_to = |from: usize, pat: &str, what: &str| -> Result<usize> {
        match xml[from..].find(pat) {
            Some(at) => Ok(from + at + pat.len()),
            None => bail!("unterminated {what} at byte {from}"),
        }
    };
    let path_of = |stack: &[(String, usize)], name: &str| -> String {
        stack
            .iter()
            .skip(1)
            .map(|(n, _)| n.as_str())
            .chain([name])
            .collect::<Vec<_>>()
            .join("/")
    };
    while i < bytes.len() {
        if bytes[i] != b'<' {
            i = xml[i..].find('<').map_or(bytes.len(), |at| i + at);
            continue;
        }
        let rest = &xml[i..];
        if rest.starts_with("<!--") {
            i = skip_to(i + 4, "-->", "comment")?;
        } else if rest.starts_with("<![CDATA[") {
            i = skip_to(i + 9, "]]>", "CDATA section")?;
        } else if rest.starts_with("<?") {
            i = skip_to(i + 2, "?>", "processing instruction")?;
        } else if rest.starts_with("<!") {
            i = skip_to(i + 2, ">", "declaration")?;
        } else if rest.starts_with("</") {
            let end = skip_to(i + 2, ">", "closing tag")?;
            let name = xml[i + 2..end - 1].trim();
            let Some((open, start)) = stack.pop() else {
                bail!("closing tag </{name}> at byte {i} has no opening tag");
            };
            if open != name {
                bail!("closing tag </{name}> at byte {i} does not match <{open}>");
            }
            if stack.is_empty() {
                root_close_start = Some(i);
            } else {
                let path = path_of(&stack, name);
                elements.push(Element {
                    path,
                    name: open,
                    start,
                    end,
                    close_start: i,
                });
            }
            i = end;
        } else {
            let end = tag_end(xml, i)?;
            let inner = &xml[i + 1..end - 1];
            let name: String = inner
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '/' && *c != '>')
                .collect();
            if name.is_empty() {
                bail!("tag without a name at byte {i}");
            }
            if inner.ends_with('/') {
                if stack.is_empty() {
                    bail!("the root element <{name}/> is empty");
                }
                let path = path_of(&stack, &name);
                elements.push(Element {
                    path,
                    name,
                    start: i,
                    end,
                    close_start: end,
                });
            } else {
                if stack.is_empty() && root_close_start.is_some() {
                    bail!("a second root element <{name}> at byte {i}");
                }
                stack.push((name, i));
            }
            i = end;
        }
    }
    if let Some((open, _)) = stack.last() {
        bail!("element <{open}> is never closed");
    }
    let Some(root_close_start) = root_close_start else {
        bail!("no root element");
    };
    Ok(Scan {
        elements,
        root_close_start,
    })
}

/// The index just past the `>` closing the tag that starts at `from`, skipping quoted values.
fn tag_end(xml: &str, from: usize) -> Result<usize> {
    let mut quote = None;
    for (offset, c) in xml[from..].char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '>') => return Ok(from + offset + 1),
            _ => {}
        }
    }
    bail!("unterminated tag at byte {from}")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One change to the text: replace `start..end` with `text` (an insertion when empty).
#[derive(Debug)]
struct Op {
    start: usize,
    end: usize,
    text: String,
}

/// Widens `start..end` over the indentation before it and the line break after it, when the
/// element stands alone on its lines, so a removal leaves no blank line behind.
fn whole_lines(xml: &str, start: usize, end: usize) -> (usize, usize) {
    let line_start = xml[..start].rfind('\n').map_or(0, |at| at + 1);
    let before_blank = xml[line_start..start]
        .chars()
        .all(|c| c == ' ' || c == '\t');
    let after = &xml[end..];
    let eol = after.find('\n').map(|at| end + at + 1).unwrap_or(xml.len());
    let after_blank = xml[end..eol].trim().is_empty();
    if before_blank && after_blank {
        (line_start, eol)
    } else {
        (start, end)
    }
}

/// `<name>value</name>`, the value escaped.
fn element(name: &str, value: &str) -> String {
    format!("<{name}>{}</{name}>", escape(value))
}

/// An insertion of `element` on a line of its own before the closing tag at `close`.
fn insertion(xml: &str, close: usize, element: String) -> Op {
    let line_start = xml[..close].rfind('\n').map_or(0, |at| at + 1);
    let indent = &xml[line_start..close];
    if indent.chars().all(|c| c == ' ' || c == '\t') {
        Op {
            start: line_start,
            end: line_start,
            text: format!("{indent}    {element}\n"),
        }
    } else {
        Op {
            start: close,
            end: close,
            text: element,
        }
    }
}

/// Applies `edits` to `xml`.
pub fn rewrite(xml: &str, edits: &Edits) -> Result<String> {
    let scan = scan(xml)?;
    let mut ops = Vec::new();
    for element in &scan.elements {
        if edits.remove.contains(&element.path) {
            let (start, end) = whole_lines(xml, element.start, element.end);
            ops.push(Op {
                start,
                end,
                text: String::new(),
            });
        } else if let Some((_, value)) = edits.set.iter().find(|(p, _)| *p == element.path) {
            let text = format!("<{0}>{1}</{0}>", element.name, escape(value));
            ops.push(Op {
                start: element.start,
                end: element.end,
                text,
            });
        }
    }
    let with_body = |path: &str| {
        scan.elements
            .iter()
            .find(|e| e.path == path && e.close_start < e.end)
    };
    // Children of elements the file lacks, gathered so each element is added once.
    let mut new_parents: Vec<(&str, String)> = Vec::new();
    for (path, value) in &edits.set {
        if scan.elements.iter().any(|e| e.path == *path) {
            continue;
        }
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        if parent.is_empty() {
            ops.push(insertion(xml, scan.root_close_start, element(name, value)));
        } else if let Some(p) = with_body(parent) {
            ops.push(insertion(xml, p.close_start, element(name, value)));
        } else if let Some((_, children)) = new_parents.iter_mut().find(|(p, _)| *p == parent) {
            children.push_str(&element(name, value));
        } else {
            new_parents.push((parent, element(name, value)));
        }
    }
    for (parent, children) in new_parents {
        // Made inside the deepest ancestor the file has (the root when it has none).
        let (mut anchor, mut missing, mut above) = (scan.root_close_start, parent, parent);
        while let Some((up, _)) = above.rsplit_once('/') {
            if let Some(p) = with_body(up) {
                (anchor, missing) = (p.close_start, &parent[up.len() + 1..]);
                break;
            }
            above = up;
        }
        let text = missing
            .rsplit('/')
            .fold(children, |inner, name| format!("<{name}>{inner}</{name}>"));
        ops.push(insertion(xml, anchor, text));
    }
    for (name, value) in &edits.append {
        ops.push(insertion(xml, scan.root_close_start, element(name, value)));
    }
    // Stable sort: insertions at one spot keep the order they were listed in.
    ops.sort_by_key(|op| op.start);
    let mut out = String::with_capacity(xml.len() + 512);
    let mut cursor = 0;
    for op in ops {
        // An op inside a span already replaced or removed (a child of a removed element).
        if op.start < cursor {
            continue;
        }
        out.push_str(&xml[cursor..op.start]);
        out.push_str(&op.text);
        cursor = op.end;
    }
    out.push_str(&xml[cursor..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Debian's 18.16 config.xml, cut down.
    const PACKAGED: &str = r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <!-- Possible levels: https://github.com/pocoproject/poco/blob/develop/Foundation/include/Poco/Logger.h#L105 -->
        <level>warning</level>
        <log>/var/log/clickhouse-server/clickhouse-server.log</log>
        <errorlog>/var/log/clickhouse-server/clickhouse-server.err.log</errorlog>
        <size>1000M</size>
    </logger>

    <http_port>8123</http_port>
    <tcp_port>9000</tcp_port>

    <!--
    <https_port>8443</https_port>
    <http_server_default_response><![CDATA[<html><head><base href="http://ui.tabix.io/"></head></html>]]></http_server_default_response>
    -->
    <openSSL>
        <server>
            <certificateFile>/etc/clickhouse-server/server.crt</certificateFile>
            <privateKeyFile>/etc/clickhouse-server/server.key</privateKeyFile>
            <dhParamsFile>/etc/clickhouse-server/dhparam.pem</dhParamsFile>
            <verificationMode>none</verificationMode>
        </server>
    </openSSL>
    <interserver_http_port>9009</interserver_http_port>
    <!-- <listen_host>::</listen_host> -->
    <listen_host>::1</listen_host>
    <listen_host>127.0.0.1</listen_host>
    <mysql_port>9004</mysql_port>
    <path>/var/lib/clickhouse/</path>
    <tmp_path>/var/lib/clickhouse/tmp/</tmp_path>
    <user_files_path>/var/lib/clickhouse/user_files/</user_files_path>
    <users_config>users.xml</users_config>
    <remote_servers incl="clickhouse_remote_servers" >
        <test_shard_localhost><shard><replica><host>localhost</host><port>9000</port></replica></shard></test_shard_localhost>
    </remote_servers>
    <zookeeper incl="zookeeper-servers" optional="true" />
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
    <format_schema_path>/var/lib/clickhouse/format_schemas/</format_schema_path>
</yandex>
"#;

    fn edits() -> Edits {
        Edits::private_server(
            Path::new("/state/clickhouse"),
            Path::new("/state/clickhouse/users.xml"),
            Ports {
                http: 41000,
                https: 41003,
                tcp: 41001,
                interserver: 41002,
            },
            Certificate {
                cert: Path::new("/state/clickhouse/tls/server.crt"),
                key: Path::new("/state/clickhouse/tls/server.key"),
            },
        )
    }

    fn rewritten() -> Result<String> {
        rewrite(PACKAGED, &edits())
    }

    #[test]
    fn moves_ports() -> Result<()> {
        let out = rewritten()?;
        assert!(out.contains("<http_port>41000</http_port>"), "{out}");
        assert!(out.contains("<tcp_port>41001</tcp_port>"), "{out}");
        assert!(
            out.contains("<interserver_http_port>41002</interserver_http_port>"),
            "{out}"
        );
        assert!(!out.contains("8123") && !out.contains(">9009<"), "{out}");
        Ok(())
    }

    #[test]
    fn serves_https_with_the_given_certificate() -> Result<()> {
        let out = rewritten()?;
        assert!(
            out.contains("\n    <https_port>41003</https_port>\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "<certificateFile>/state/clickhouse/tls/server.crt</certificateFile>\n            \
                 <privateKeyFile>/state/clickhouse/tls/server.key</privateKeyFile>\n            \
                 <verificationMode>none</verificationMode>"
            ),
            "{out}"
        );
        assert!(!out.contains("dhparam") && !out.contains("/etc/"), "{out}");
        Ok(())
    }

    #[test]
    fn moves_every_path_into_the_state_dir() -> Result<()> {
        let out = rewritten()?;
        for expected in [
            "<path>/state/clickhouse/data/</path>",
            "<tmp_path>/state/clickhouse/tmp/</tmp_path>",
            "<user_files_path>/state/clickhouse/user_files/</user_files_path>",
            "<format_schema_path>/state/clickhouse/format_schemas/</format_schema_path>",
            "<users_config>/state/clickhouse/users.xml</users_config>",
            "<log>/state/clickhouse/log/clickhouse-server.log</log>",
            "<errorlog>/state/clickhouse/log/clickhouse-server.err.log</errorlog>",
        ] {
            assert!(out.contains(expected), "missing {expected} in\n{out}");
        }
        assert!(
            !out.contains("/var/lib/clickhouse") && !out.contains("/var/log"),
            "{out}"
        );
        Ok(())
    }

    #[test]
    fn leaves_nested_elements_of_the_same_name_alone() -> Result<()> {
        let out = rewritten()?;
        assert!(
            out.contains("<path>/clickhouse/task_queue/ddl</path>"),
            "{out}"
        );
        assert!(out.contains("<port>9000</port>"), "{out}");
        Ok(())
    }

    #[test]
    fn listens_on_ipv4_loopback_only() -> Result<()> {
        let out = rewritten()?;
        assert!(!out.contains("<listen_host>::1</listen_host>"), "{out}");
        assert_eq!(
            out.matches("<listen_host>127.0.0.1</listen_host>").count(),
            1,
            "{out}"
        );
        // A commented-out line is not an element and stays as it was.
        assert!(
            out.contains("<!-- <listen_host>::</listen_host> -->"),
            "{out}"
        );
        Ok(())
    }

    #[test]
    fn names_a_listen_host_when_the_package_leaves_them_commented_out() -> Result<()> {
        // Debian's file: without any listen_host ClickHouse listens on ::1 as well.
        let debian = "<yandex>\n    <!--\n    <listen_host>::1</listen_host>\n    -->\n</yandex>\n";
        let out = rewrite(debian, &edits())?;
        assert!(
            out.contains("<!--\n    <listen_host>::1</listen_host>\n    -->"),
            "{out}"
        );
        assert!(
            out.ends_with("    <listen_host>127.0.0.1</listen_host>\n</yandex>\n"),
            "{out}"
        );
        Ok(())
    }

    #[test]
    fn removes_extra_listeners_but_not_comments() -> Result<()> {
        let out = rewritten()?;
        assert!(!out.contains("mysql_port"), "{out}");
        assert!(
            out.contains("<https_port>8443</https_port>"),
            "comment kept:\n{out}"
        );
        assert!(
            !out.contains("\n\n\n"),
            "removals leave no blank lines:\n{out}"
        );
        Ok(())
    }

    #[test]
    fn inserts_missing_settings_at_the_right_depth() -> Result<()> {
        let out = rewritten()?;
        assert!(out.contains("    <timezone>UTC</timezone>\n"), "{out}");
        assert!(
            out.ends_with("    <listen_host>127.0.0.1</listen_host>\n</yandex>\n"),
            "{out}"
        );
        let without_errorlog = PACKAGED.replace(
            "        <errorlog>/var/log/clickhouse-server/clickhouse-server.err.log</errorlog>\n",
            "",
        );
        let out = rewrite(&without_errorlog, &edits())?;
        assert!(
            out.contains(
                "        <errorlog>/state/clickhouse/log/clickhouse-server.err.log</errorlog>\n    </logger>"
            ),
            "{out}"
        );
        Ok(())
    }

    #[test]
    fn rewriting_twice_changes_nothing_more() -> Result<()> {
        let once = rewritten()?;
        assert_eq!(rewrite(&once, &edits())?, once);
        Ok(())
    }

    #[test]
    fn accepts_the_newer_root_name_and_escapes_values() -> Result<()> {
        let edits = Edits {
            set: vec![("path".to_owned(), "/a&b/<c>/".to_owned())],
            ..Edits::default()
        };
        let out = rewrite("<clickhouse><path>/x/</path></clickhouse>", &edits)?;
        assert_eq!(
            out,
            "<clickhouse><path>/a&amp;b/&lt;c&gt;/</path></clickhouse>"
        );
        Ok(())
    }

    #[test]
    fn keeps_angle_brackets_inside_quoted_attributes() -> Result<()> {
        let edits = Edits {
            set: vec![("p".to_owned(), "2".to_owned())],
            ..Edits::default()
        };
        let out = rewrite(r#"<r><q a="x>y"/><p>1</p></r>"#, &edits)?;
        assert_eq!(out, r#"<r><q a="x>y"/><p>2</p></r>"#);
        Ok(())
    }

    #[test]
    fn reports_malformed_input() {
        let err = |xml: &str| {
            rewrite(xml, &edits())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err("").contains("no root element"));
        assert!(err("<yandex><a></b></yandex>").contains("does not match"));
        assert!(err("<yandex><!-- open").contains("unterminated comment"));
        assert!(err("<yandex><a>").contains("never closed"));
    }

    #[test]
    fn makes_missing_parents_inside_the_deepest_one_present() -> Result<()> {
        let deep = Edits {
            set: vec![
                ("a/b/c".to_owned(), "x".to_owned()),
                ("a/b/d".to_owned(), "y".to_owned()),
            ],
            ..Edits::default()
        };
        assert_eq!(
            rewrite("<yandex></yandex>", &deep)?,
            "<yandex><a><b><c>x</c><d>y</d></b></a></yandex>"
        );
        assert_eq!(
            rewrite("<yandex><a><e/></a></yandex>", &deep)?,
            "<yandex><a><e/><b><c>x</c><d>y</d></b></a></yandex>"
        );
        Ok(())
    }
}
