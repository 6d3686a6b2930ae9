//! TLS of a cell through the real API server, under the chart's ServiceAccount: cert-manager's
//! `Certificate` CRD (the operator's tests vendor it) is installed before the operators start
//! (they look once whether it is served). `spec.tls: {}` on the dev cell makes its CA and
//! certificate Secrets, mounts them in the services' and datastores' pods, and the cell is Ready
//! again; with `spec.edge` too, a BackendTLSPolicy per service names the cell's CA bundle; `certManager` swaps the operator's CA for a `Certificate`, whose Secret the services
//! wait for; removing `spec.tls` takes it all away.

use serde_json::{Value, json};

use super::{CELL, CONVERGE, NAMESPACE, cell_json, condition, patch_cell, ready_now};
use crate::harness::{Kube, eventually, repo};

/// Installs cert-manager's Certificate CRD (v1.16.2, vendored whole; the Helm chart's labels,
/// which are template strings and no valid label values, dropped) and waits until it is served.
pub fn install_cert_manager_crd(kube: &Kube) {
    let path =
        repo("operator/tests/operator/fixtures/cert-manager/cert-manager.io_certificates.yaml");
    let text = std::fs::read_to_string(&path).expect("vendored crd");
    let mut crd: Value = serde_yaml::from_str(&text).expect("a CRD");
    if let Some(metadata) = crd["metadata"].as_object_mut() {
        metadata.remove("labels");
        metadata.remove("annotations");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("certificates.json");
    std::fs::write(&file, crd.to_string()).expect("write crd");
    kube.k(&["apply", "--server-side", "-f", &file.display().to_string()]);
    kube.k(&[
        "wait",
        "--for=condition=Established",
        "crd/certificates.cert-manager.io",
        "--timeout=60s",
    ]);
}

fn secret(kube: &Kube, name: &str) -> Option<Value> {
    kube.get(&["secret", name, "-n", NAMESPACE])
}

fn tls_condition(kube: &Kube) -> Option<(String, String)> {
    condition(&cell_json(kube, CELL), "CertificatesReady").map(|c| {
        (
            c["status"].as_str().unwrap_or_default().to_string(),
            c["reason"].as_str().unwrap_or_default().to_string(),
        )
    })
}

/// Whether the pod template of `kind/name` mounts Secret `<cell>-tls`.
fn mounts_the_certificate(kube: &Kube, kind: &str, name: &str) -> bool {
    kube.get(&[kind, name, "-n", NAMESPACE])
        .is_some_and(|object| {
            object["spec"]["template"]["spec"]["volumes"]
                .as_array()
                .is_some_and(|volumes| {
                    volumes
                        .iter()
                        .any(|v| v["secret"]["secretName"] == format!("{CELL}-tls"))
                })
        })
}

/// `spec.tls` on the dev cell, from the operator's CA, then cert-manager, then off.
pub fn certificates_follow_spec_tls(kube: &Kube) {
    let (ca, tls) = (format!("{CELL}-ca"), format!("{CELL}-tls"));
    patch_cell(kube, CELL, json!({"spec": {"tls": {}}}));
    eventually(
        "the operator makes the dev cell's CA and certificate and says so",
        CONVERGE,
        || {
            secret(kube, &ca).is_some()
                && secret(kube, &tls).is_some_and(|s| s["type"] == "kubernetes.io/tls")
                && tls_condition(kube) == Some(("True".into(), "Issued".into()))
        },
    );
    let status = cell_json(kube, CELL)["status"]["tls"].clone();
    assert_eq!(status["issuer"], "cell-ca", "{status}");
    eventually(
        "the services and the datastores mount it, and the cell is Ready again",
        CONVERGE,
        || {
            mounts_the_certificate(kube, "deployment", "flashsale")
                && mounts_the_certificate(kube, "statefulset", "redis")
                && ready_now(kube, CELL)
        },
    );
    let issued = secret(kube, &tls).expect("the certificate");

    // With an edge too, the Gateway is told to reach each service over TLS and verify it.
    patch_cell(
        kube,
        CELL,
        json!({"spec": {"edge": {
            "gateway": {"name": "public", "namespace": "titan-edge"},
            "hostnames": ["dev.titan.example"]
        }}}),
    );
    let policy = format!("{CELL}-flashsale-backend-tls");
    eventually(
        "a BackendTLSPolicy per service with the cell's CA bundle, and the edge applied",
        CONVERGE,
        || {
            kube.get(&["backendtlspolicy", &policy, "-n", NAMESPACE])
                .is_some_and(|p| {
                    p["spec"]["validation"]["hostname"] == format!("flashsale.{NAMESPACE}.svc")
                        && p["spec"]["validation"]["caCertificateRefs"][0]["name"]
                            == format!("{CELL}-ca-bundle")
                })
                && kube
                    .get(&["configmap", &format!("{CELL}-ca-bundle"), "-n", NAMESPACE])
                    .is_some_and(|c| c["data"]["ca.crt"].is_string())
                && condition(&cell_json(kube, CELL), "EdgeRoutesApplied")
                    .is_some_and(|c| c["status"] == "True")
        },
    );
    patch_cell(kube, CELL, json!({"spec": {"edge": null}}));
    eventually("without the edge the policies go", CONVERGE, || {
        kube.get(&["backendtlspolicy", &policy, "-n", NAMESPACE])
            .is_none()
    });

    // cert-manager instead: a Certificate; the operator's CA goes. Until cert-manager writes
    // the Secret the services would wait (the operator's one is deleted here to see that).
    patch_cell(
        kube,
        CELL,
        json!({"spec": {"tls": {"certManager": {
            "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"}
        }}}}),
    );
    eventually(
        "a Certificate for the dev cell, and its CA Secret pruned",
        CONVERGE,
        || {
            kube.get(&["certificate", &tls, "-n", NAMESPACE])
                .is_some_and(|c| c["spec"]["issuerRef"]["name"] == "internal-ca")
                && secret(kube, &ca).is_none()
        },
    );
    kube.k(&["delete", "secret", &tls, "-n", NAMESPACE]);
    eventually(
        "the cell says the certificate is not issued",
        CONVERGE,
        || tls_condition(kube) == Some(("False".into(), "CertificateNotIssued".into())),
    );
    // What cert-manager would write: the Secret with the labels the Certificate asks for.
    let certificate = kube.json(&["get", "certificate", &tls, "-n", NAMESPACE]);
    let written = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": tls,
            "namespace": NAMESPACE,
            "labels": certificate["spec"]["secretTemplate"]["labels"],
        },
        "data": issued["data"],
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("secret.json");
    std::fs::write(&file, written.to_string()).expect("write secret");
    kube.k(&["create", "-f", &file.display().to_string()]);
    eventually(
        "the cell takes cert-manager's certificate",
        CONVERGE,
        || {
            tls_condition(kube) == Some(("True".into(), "Issued".into()))
                && cell_json(kube, CELL)["status"]["tls"]["issuer"] == "cert-manager"
                && ready_now(kube, CELL)
        },
    );

    patch_cell(kube, CELL, json!({"spec": {"tls": null}}));
    eventually(
        "without spec.tls the Certificate, the Secret and the mounts go, and the cell is Ready",
        CONVERGE,
        || {
            kube.get(&["certificate", &tls, "-n", NAMESPACE]).is_none()
                && secret(kube, &tls).is_none()
                && tls_condition(kube).is_none()
                && !mounts_the_certificate(kube, "deployment", "flashsale")
                && !mounts_the_certificate(kube, "statefulset", "redis")
                && ready_now(kube, CELL)
        },
    );
}
