//! TLS of a cell (`spec.tls`): the operator's per-cell CA and the certificate it issues (pure,
//! with the clock passed in: renewal and the CA's rotation checked by verifying certificates as
//! a client would, with rustls), what the services' pods get, cert-manager's `Certificate`
//! checked against its vendored schema, rounds against the in-memory API server, and the
//! `Certificate` applied through a real API server with cert-manager's CRD installed.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::{
    ByteString,
    api::core::v1::{Namespace, Secret},
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use rustls::{
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use serde_json::{Value, json};
use titan_crds::{Cell, Service};
use titan_kit::testing::eventually;
use titan_operator::{
    apply,
    cell::{
        build::build as cell_build,
        certificates::{
            self, CERTIFICATE_LIFETIME, Certificate, RENEW_BEFORE, SUCCESSOR_BEFORE, Tls,
        },
        connections,
        credentials::Credentials,
        gateway::BackendTlsPolicy,
    },
    labels,
    service::{build as service_build, validate as service_validate},
    shared::CellView,
};
use titan_router::store::configmap::{test_control_plane, test_namespace};

use crate::{
    reconcile::{condition, context, create_cell, get_cell, reconcile_cell},
    support::{
        CERT_MANAGER_CRD, Fake, assert_unprocessable, install_crd, placed, server_side_apply,
        validate, validator, vendored_crd,
    },
};

/// A cell with TLS from its own CA.
fn tls_cell() -> Cell {
    tls_cell_named("sg-1")
}

fn tls_cell_named(name: &str) -> Cell {
    serde_yaml::from_str(&format!(
        "apiVersion: commerce.titan.dev/v1alpha1\nkind: Cell\nmetadata: {{name: {name}, uid: 0b5c3a52-8d0e-4c57-9a3e-3f1f0c2d7e11}}\nspec: {{version: '0.1.0', tls: {{}}}}"
    ))
    .unwrap()
}

/// A cell with TLS from cert-manager's ClusterIssuer `internal-ca`.
fn cert_manager_cell() -> Cell {
    serde_yaml::from_str(
        "apiVersion: commerce.titan.dev/v1alpha1\nkind: Cell\nmetadata: {name: sg-1, uid: 0b5c3a52-8d0e-4c57-9a3e-3f1f0c2d7e11}\nspec: {version: '0.1.0', tls: {certManager: {issuerRef: {name: internal-ca, kind: ClusterIssuer}}}}",
    )
    .unwrap()
}

/// 2027-01-15T08:00:00Z.
fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

/// One round of the operator's CA for `cell` at `now`, from what the previous one wrote.
fn round(cell: &Cell, previous: Option<&Tls>, now: Timestamp) -> Tls {
    let kept = |data: Option<&BTreeMap<String, String>>| data.cloned().unwrap_or_default();
    certificates::resolve(
        cell,
        &kept(previous.and_then(|p| p.ca_secret.as_ref())),
        &kept(previous.and_then(|p| p.tls_secret.as_ref())),
        now,
    )
    .unwrap()
}

fn key<'a>(data: &'a Option<BTreeMap<String, String>>, key: &str) -> &'a str {
    data.as_ref().unwrap()[key].as_str()
}

/// Whether a client trusting `bundle` accepts `cert` as the server `name` at `at`, as kit's
/// clients check (rustls' WebPKI verifier).
fn verify(bundle: &str, cert: &str, name: &str, at: Timestamp) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let leaf = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    let seconds = u64::try_from(at.as_second()).unwrap();
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(seconds)),
        )
        .map(|_| ())
}

fn certificates_in(bundle: &str) -> usize {
    bundle.matches("-----BEGIN CERTIFICATE-----").count()
}

#[test]
fn the_cells_ca_issues_a_certificate_its_services_verify_and_a_round_keeps_it() {
    let cell = tls_cell();
    let first = round(&cell, None, t0());
    let bundle = first.bundle.clone().unwrap();
    let leaf = key(&first.tls_secret, "tls.crt");
    assert_eq!(certificates_in(&bundle), 1);
    assert_eq!(key(&first.tls_secret, "ca.crt"), bundle);
    assert_eq!(key(&first.ca_secret, "ca.crt"), bundle);
    // The names services call each other by, short and qualified.
    for name in [
        "abtesting",
        "flashsale",
        "abtesting.titan-sg-1",
        "chat.titan-sg-1.svc",
        "chat.titan-sg-1.svc.cluster.local",
    ] {
        assert_eq!(verify(&bundle, leaf, name, t0()), Ok(()), "{name}");
    }
    // Not another namespace's, and not once it expired.
    assert!(matches!(
        verify(&bundle, leaf, "chat.titan-other.svc", t0()),
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForNameContext { .. }
        ))
    ));
    assert!(matches!(
        verify(&bundle, leaf, "chat", t0() + CERTIFICATE_LIFETIME + days(1)),
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ExpiredContext { .. }
        ))
    ));
    // Another cell's CA does not vouch for it.
    let other = round(&tls_cell_named("sg-2"), None, t0());
    assert!(matches!(
        verify(other.bundle.as_deref().unwrap(), leaf, "chat", t0()),
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        ))
    ));

    let status = first.status.clone().unwrap();
    assert_eq!(status.issuer, "cell-ca");
    assert_eq!(
        status.not_after.as_deref(),
        Some((t0() + CERTIFICATE_LIFETIME).to_string().as_str())
    );
    assert_eq!(
        status.renews_at.as_deref(),
        Some(
            (t0() + CERTIFICATE_LIFETIME - RENEW_BEFORE)
                .to_string()
                .as_str()
        )
    );
    assert_eq!(
        status.ca_not_after.as_deref(),
        Some((t0() + days(3650)).to_string().as_str())
    );
    let ready = first.condition.clone().unwrap();
    assert_eq!(
        (ready.type_, ready.status, ready.reason),
        ("CertificatesReady", true, "Issued")
    );

    // Read back a day later, nothing changes: no key is minted again, no pod would roll.
    assert_eq!(round(&cell, Some(&first), t0() + days(1)), first);
}

#[test]
fn the_certificate_renews_before_expiry_and_the_ca_rotates_without_a_client_noticing() {
    let cell = tls_cell();
    let first = round(&cell, None, t0());
    let old_ca = key(&first.ca_secret, "ca.crt").to_string();

    // 30 days before it expires the certificate is renewed by the same CA: the bundle (what
    // the pods' hash covers) stays, so no pod rolls; kit reloads the files in place.
    let due = t0() + CERTIFICATE_LIFETIME - RENEW_BEFORE + SignedDuration::from_secs(1);
    let renewed = round(&cell, Some(&first), due);
    assert_ne!(
        key(&renewed.tls_secret, "tls.crt"),
        key(&first.tls_secret, "tls.crt")
    );
    assert_ne!(
        key(&renewed.tls_secret, "tls.key"),
        key(&first.tls_secret, "tls.key")
    );
    assert_eq!(renewed.bundle, first.bundle);
    assert_eq!(renewed.ca_secret, first.ca_secret);
    assert_eq!(
        verify(&old_ca, key(&renewed.tls_secret, "tls.crt"), "chat", due),
        Ok(())
    );

    // A year before the CA expires its successor is made and trusted at once (the bundle
    // changes: the pods roll onto it), while the old CA still signs.
    let ca_expiry = t0() + days(3650);
    let t1 = ca_expiry - SUCCESSOR_BEFORE + SignedDuration::from_secs(1);
    let trusting = round(&cell, Some(&renewed), t1);
    let successor = key(&trusting.ca_secret, "successor.crt").to_string();
    assert_ne!(successor, old_ca);
    let two = trusting.bundle.clone().unwrap();
    assert_eq!(certificates_in(&two), 2);
    assert!(two.contains(&old_ca) && two.contains(&successor));
    let leaf = key(&trusting.tls_secret, "tls.crt");
    assert_eq!(verify(&old_ca, leaf, "chat", t1), Ok(()));

    // Once the old CA could not cover a whole certificate lifetime, the successor signs; the
    // bundle is the same two CAs in the same order, so again no pod rolls, and every client
    // (rolled or not) accepts the new certificate.
    let t2 = ca_expiry - CERTIFICATE_LIFETIME + SignedDuration::from_secs(1);
    let promoted = round(&cell, Some(&trusting), t2);
    assert_eq!(key(&promoted.ca_secret, "ca.crt"), successor);
    assert_eq!(key(&promoted.ca_secret, "retired.crt"), old_ca);
    assert!(
        !promoted
            .ca_secret
            .as_ref()
            .unwrap()
            .contains_key("successor.crt")
    );
    assert_eq!(promoted.bundle.as_deref(), Some(two.as_str()));
    let leaf = key(&promoted.tls_secret, "tls.crt");
    assert_eq!(verify(&successor, leaf, "chat", t2), Ok(()));
    assert!(verify(&old_ca, leaf, "chat", t2).is_err());
    assert_eq!(
        promoted.status.as_ref().unwrap().not_after.as_deref(),
        Some((t2 + CERTIFICATE_LIFETIME).to_string().as_str())
    );

    // When the old CA expires it leaves the bundle.
    let t3 = ca_expiry + SignedDuration::from_secs(1);
    let after = round(&cell, Some(&promoted), t3);
    assert_eq!(after.bundle.as_deref(), Some(successor.as_str()));
    assert!(
        !after
            .ca_secret
            .as_ref()
            .unwrap()
            .contains_key("retired.crt")
    );
    assert_eq!(
        verify(&successor, key(&after.tls_secret, "tls.crt"), "chat", t3),
        Ok(())
    );
}

#[test]
fn a_broken_or_foreign_secret_is_replaced_not_trusted() {
    let cell = tls_cell();
    let first = round(&cell, None, t0());
    let other = round(&tls_cell(), None, t0());

    // A certificate signed by another CA is reissued by the cell's own.
    let mut foreign = first.clone();
    foreign.tls_secret = other.tls_secret.clone();
    let reissued = round(&cell, Some(&foreign), t0());
    assert_eq!(reissued.ca_secret, first.ca_secret);
    let leaf = key(&reissued.tls_secret, "tls.crt");
    assert_ne!(leaf, key(&other.tls_secret, "tls.crt"));
    assert_eq!(
        verify(first.bundle.as_deref().unwrap(), leaf, "chat", t0()),
        Ok(())
    );

    // A certificate with another's key is reissued.
    let mut mismatched = first.clone();
    mismatched
        .tls_secret
        .as_mut()
        .unwrap()
        .insert("tls.key".into(), key(&other.tls_secret, "tls.key").into());
    let reissued = round(&cell, Some(&mismatched), t0());
    assert_ne!(
        key(&reissued.tls_secret, "tls.crt"),
        key(&first.tls_secret, "tls.crt")
    );

    // A CA whose key is not its own (or is not PEM) is not used: a new CA, a new bundle.
    for broken in [key(&other.ca_secret, "ca.key"), "not a key"] {
        let mut bad = first.clone();
        bad.ca_secret
            .as_mut()
            .unwrap()
            .insert("ca.key".into(), broken.into());
        let replaced = round(&cell, Some(&bad), t0());
        assert_ne!(replaced.bundle, first.bundle);
        assert_eq!(
            verify(
                replaced.bundle.as_deref().unwrap(),
                key(&replaced.tls_secret, "tls.crt"),
                "chat",
                t0()
            ),
            Ok(())
        );
    }
}

/// The Titan Services of `cell` built with `tls`, by name.
fn services_with(cell: &Cell, tls: &Tls) -> BTreeMap<String, Service> {
    objects_with(cell, tls)
        .services
        .into_iter()
        .map(|s| (s.name_any(), s))
        .collect()
}

fn secrets_hash(service: &Service) -> String {
    service.annotations()[labels::SECRETS_HASH].clone()
}

#[test]
fn services_mount_the_certificate_and_roll_only_when_the_ca_bundle_changes() {
    let cell = tls_cell();
    let first = round(&cell, None, t0());
    let renewed = round(&cell, Some(&first), t0() + days(61));
    let rotated = round(&cell, Some(&first), t0() + days(3650) - SUCCESSOR_BEFORE);
    let hashes = |tls: &Tls| -> Vec<String> {
        services_with(&cell, tls)
            .values()
            .map(secrets_hash)
            .collect()
    };
    assert_eq!(hashes(&renewed), hashes(&first));
    let (before, after) = (hashes(&first), hashes(&rotated));
    assert!(before.iter().zip(&after).all(|(b, a)| b != a));

    // The Secrets: the CA's (its key stays there: no pod mounts it) and the services'.
    let credentials = Credentials::placeholders();
    let connections = connections::resolve(&cell, &credentials, &connections::Offline);
    let objects = cell_build(
        &cell,
        &credentials,
        &first,
        &connections,
        &Default::default(),
    );
    let secret = |name: &str| {
        objects
            .secrets
            .iter()
            .find(|s| s.name_any() == name)
            .unwrap()
    };
    let keys = |s: &Secret| s.data.as_ref().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(secret("sg-1-ca").type_.as_deref(), Some("Opaque"));
    assert_eq!(keys(secret("sg-1-ca")), ["ca.crt", "ca.key"]);
    assert_eq!(
        secret("sg-1-tls").type_.as_deref(),
        Some("kubernetes.io/tls")
    );
    assert_eq!(keys(secret("sg-1-tls")), ["ca.crt", "tls.crt", "tls.key"]);
    assert!(objects.certificates.is_empty());
    let validator = validator();
    for secret in &objects.secrets {
        assert_eq!(
            validate(&validator, &serde_json::to_value(secret).unwrap()),
            Ok(())
        );
    }

    // Each pod mounts the Secret beside its config and points kit at its files.
    let service = &services_with(&cell, &first)["coupon"];
    let rendered = service_validate::validate(service, "sg-1").unwrap();
    let objects = service_build::build(service, &CellView::of(&cell), &rendered).unwrap();
    let pod = objects.deployment.spec.unwrap().template.spec.unwrap();
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "tls")
        .unwrap();
    assert_eq!(
        volume.secret.unwrap().secret_name.as_deref(),
        Some("sg-1-tls")
    );
    let container = &pod.containers[0];
    let mount = container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "tls")
        .unwrap();
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        ("/etc/titan-tls", Some(true))
    );
    let env: BTreeMap<&str, &str> = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e.name.as_str(), e.value.as_deref()?)))
        .filter(|(name, _)| name.starts_with("TITAN_TLS_"))
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("TITAN_TLS_CA_FILE", "/etc/titan-tls/ca.crt"),
            ("TITAN_TLS_CERT_FILE", "/etc/titan-tls/tls.crt"),
            ("TITAN_TLS_KEY_FILE", "/etc/titan-tls/tls.key"),
        ])
    );

    // Without spec.tls: no volume, no variable.
    let plain: Cell = serde_yaml::from_str(
        "apiVersion: commerce.titan.dev/v1alpha1\nkind: Cell\nmetadata: {name: sg-1}\nspec: {version: '0.1.0'}",
    )
    .unwrap();
    let service = &services_with(&plain, &Tls::default())["coupon"];
    let rendered = service_validate::validate(service, "sg-1").unwrap();
    let objects = service_build::build(service, &CellView::of(&plain), &rendered).unwrap();
    let pod = objects.deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.volumes
            .unwrap()
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["config"]
    );
    assert!(
        !pod.containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name.starts_with("TITAN_TLS_"))
    );
}

#[test]
fn under_tls_campaign_calls_abtesting_over_https_unless_it_names_its_own_url() {
    let tls = round(&tls_cell(), None, t0());
    let url = |campaign: Value| {
        let mut cell = tls_cell();
        cell.spec.services.campaign = serde_json::from_value(campaign).unwrap();
        services_with(&cell, &tls)["campaign"]
            .spec
            .config
            .as_ref()
            .map(|c| c["abtestingUrl"].clone())
    };
    let https = Some(json!("https://abtesting:50051"));
    // No config; a config that leaves the URL at its default (the typed config fills it in).
    assert_eq!(url(Value::Null), https);
    assert_eq!(url(json!({"config": {"sendRatePerSecond": 10}})), https);
    assert_eq!(
        url(json!({"config": {"abtestingUrl": "http://abtesting:50051"}})),
        https
    );
    // A URL of the user's own is theirs.
    assert_eq!(
        url(json!({"config": {"abtestingUrl": "https://ab.example:443"}})),
        Some(json!("https://ab.example:443"))
    );
}

#[test]
fn cert_manager_gets_a_certificate_that_passes_its_schema() {
    let cell = cert_manager_cell();
    let objects = objects_with(&cell, &Tls::placeholders(&cell));
    // No CA of the operator's: cert-manager writes the services' Secret.
    assert!(
        !objects
            .secrets
            .iter()
            .any(|s| s.name_any().starts_with("sg-1-ca") || s.name_any() == "sg-1-tls")
    );
    let [certificate] = objects.certificates.as_slice() else {
        panic!("one Certificate: {:?}", objects.certificates);
    };
    let value = serde_json::to_value(certificate).unwrap();
    assert_eq!(validate(&validator(), &value), Ok(()));
    let services = titan_crds::ServiceKind::TITAN.map(|k| k.as_str());
    let mut dns_names: Vec<String> = services.iter().map(|s| s.to_string()).collect();
    dns_names.extend(services.iter().map(|s| format!("{s}.titan-sg-1")));
    dns_names.extend([
        "*.titan-sg-1.svc".to_string(),
        "*.titan-sg-1.svc.cluster.local".to_string(),
    ]);
    assert_eq!(
        value["spec"],
        json!({
            "secretName": "sg-1-tls",
            "secretTemplate": {"labels": value["metadata"]["labels"]},
            "dnsNames": dns_names,
            "duration": "2160h",
            "renewBefore": "720h",
            "usages": ["digital signature", "key encipherment", "server auth", "client auth"],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
        })
    );
    assert_eq!(value["metadata"]["namespace"], "titan-sg-1");
    assert_eq!(value["metadata"]["labels"][labels::CELL], "sg-1");

    // The schema refuses what cert-manager would: a Certificate without an issuer.
    let mut bad = value.clone();
    bad["spec"].as_object_mut().unwrap().remove("issuerRef");
    let refused = validate(&validator(), &bad).unwrap_err();
    assert!(refused.contains("issuerRef"), "{refused}");
}

/// The certificate a CA issuer of cert-manager would write for `cell`: the operator's own
/// resolution of another cell stands in for the CA (the Secret's form is cert-manager's).
fn issued_secret(cell: &Cell, certificate: &Certificate) -> Secret {
    let issued = round(&tls_cell(), None, Timestamp::now());
    let mut secret = Secret {
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            issued
                .tls_secret
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    };
    secret.metadata.name = Some(certificate.spec.secret_name.clone());
    secret.metadata.namespace = Some(cell.namespace_name());
    secret.metadata.labels = Some(certificate.spec.secret_template.labels.clone());
    secret
}

#[tokio::test]
async fn a_cell_keeps_its_ca_across_rounds_and_reports_its_certificate() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &tls_cell()).await;
    reconcile_cell(&fake, &ctx, "sg-1").await;

    let secrets = Api::<Secret>::namespaced(fake.client.clone(), "titan-sg-1");
    let ca = secrets.get("sg-1-ca").await.unwrap();
    let tls = secrets.get("sg-1-tls").await.unwrap();
    let status = get_cell(&fake, "sg-1").await.status.unwrap();
    assert_eq!(
        condition(&status.conditions, "CertificatesReady"),
        ("True".into(), "Issued".into())
    );
    assert_eq!(status.tls.as_ref().unwrap().issuer, "cell-ca");
    assert_eq!(status.services.unwrap().total, 16);
    assert!(fake.invalid.lock().unwrap().is_empty());

    // The next round keeps both Secrets and writes nothing.
    let writes = fake.writes();
    reconcile_cell(&fake, &ctx, "sg-1").await;
    assert_eq!(fake.writes(), writes);
    assert_eq!(secrets.get("sg-1-ca").await.unwrap().data, ca.data);
    assert_eq!(secrets.get("sg-1-tls").await.unwrap().data, tls.data);

    assert_eq!(status.tls.unwrap().not_after, not_after_of(&tls));

    // A lost CA Secret: a new CA, its certificate, and the services roll onto the new bundle.
    let services = Api::<Service>::namespaced(fake.client.clone(), "titan-sg-1");
    let hash_before = secrets_hash(&services.get("coupon").await.unwrap());
    secrets
        .delete("sg-1-ca", &DeleteParams::default())
        .await
        .unwrap();
    reconcile_cell(&fake, &ctx, "sg-1").await;
    let new_ca = secrets.get("sg-1-ca").await.unwrap();
    let ca_crt = |s: &Secret| s.data.as_ref().unwrap()["ca.crt"].clone();
    assert_ne!(ca_crt(&new_ca), ca_crt(&ca));
    assert_eq!(
        ca_crt(&secrets.get("sg-1-tls").await.unwrap()),
        ca_crt(&new_ca)
    );
    assert_ne!(
        secrets_hash(&services.get("coupon").await.unwrap()),
        hash_before
    );
}

#[test]
fn a_paused_cell_mints_nothing_and_reports_what_it_has() {
    let mut paused = tls_cell();
    paused.spec.operation.reconciliation_paused = true;
    let now = t0();
    // Nothing yet: nothing is minted, the same answer every round.
    let first = certificates::of(&paused, &[], false, now).unwrap();
    assert_eq!(first, certificates::of(&paused, &[], false, now).unwrap());
    assert_eq!(
        (first.ca_secret.as_ref(), first.bundle.as_ref()),
        (None, None)
    );
    let condition = first.condition.unwrap();
    assert_eq!(
        (condition.status, condition.reason),
        (false, "ReconciliationPaused")
    );
    // Issued before the pause: reported as it is.
    let issued = round(&tls_cell(), None, now);
    let secrets: Vec<Secret> = [
        ("sg-1-ca", issued.ca_secret.clone().unwrap()),
        ("sg-1-tls", issued.tls_secret.clone().unwrap()),
    ]
    .into_iter()
    .map(|(name, data)| {
        let mut secret = Secret {
            data: Some(
                data.into_iter()
                    .map(|(k, v)| (k, ByteString(v.into_bytes())))
                    .collect(),
            ),
            ..Default::default()
        };
        secret.metadata.name = Some(name.into());
        secret
    })
    .collect();
    assert_eq!(
        certificates::of(&paused, &secrets, false, now + days(1)).unwrap(),
        issued
    );
}

/// `notAfter` of the certificate in Secret `tls`, as the status states it.
fn not_after_of(tls: &Secret) -> Option<String> {
    let pem = tls.data.as_ref().unwrap()["tls.crt"].0.clone();
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = block.parse_x509().unwrap();
    Some(
        Timestamp::from_second(cert.validity().not_after.timestamp())
            .unwrap()
            .to_string(),
    )
}

/// How many `Service`s the cell has.
async fn count(services: &Api<Service>) -> usize {
    services
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test]
async fn on_cert_manager_the_services_wait_for_the_issued_secret() {
    let fake = Fake::new().await;
    let cell = cert_manager_cell();

    // Not installed: the status says so, and no service starts without its certificate.
    let ctx = context(&fake);
    create_cell(&fake, &cell).await;
    reconcile_cell(&fake, &ctx, "sg-1").await;
    let status = get_cell(&fake, "sg-1").await.status.unwrap();
    assert_eq!(
        condition(&status.conditions, "CertificatesReady"),
        ("False".into(), "CertManagerNotInstalled".into())
    );
    let services = Api::<Service>::namespaced(fake.client.clone(), "titan-sg-1");
    assert_eq!(count(&services).await, 0);

    // Installed: the Certificate is applied; the services wait until cert-manager issued it.
    let ctx = Arc::new((*context(&fake)).clone().with_cert_manager(true));
    reconcile_cell(&fake, &ctx, "sg-1").await;
    let certificates = Api::<Certificate>::namespaced(fake.client.clone(), "titan-sg-1");
    let certificate = certificates.get("sg-1-tls").await.unwrap();
    let status = get_cell(&fake, "sg-1").await.status.unwrap();
    let waiting =
        titan_operator::conditions::find(&status.conditions, "CertificatesReady").unwrap();
    assert_eq!(waiting.reason, "CertificateNotIssued");
    assert!(
        waiting
            .message
            .contains("kubectl describe certificate -n titan-sg-1 sg-1-tls"),
        "{}",
        waiting.message
    );
    assert_eq!(count(&services).await, 0);

    // cert-manager writes the Secret (with the labels the Certificate asked for): the services
    // start, and the operator does not prune the Secret it did not write.
    let secrets = Api::<Secret>::namespaced(fake.client.clone(), "titan-sg-1");
    secrets
        .create(&PostParams::default(), &issued_secret(&cell, &certificate))
        .await
        .unwrap();
    reconcile_cell(&fake, &ctx, "sg-1").await;
    let status = get_cell(&fake, "sg-1").await.status.unwrap();
    assert_eq!(
        condition(&status.conditions, "CertificatesReady"),
        ("True".into(), "Issued".into())
    );
    assert_eq!(status.tls.unwrap().issuer, "cert-manager");
    assert_eq!(count(&services).await, 16);
    assert!(secrets.get_opt("sg-1-tls").await.unwrap().is_some());
    assert!(fake.invalid.lock().unwrap().is_empty());

    // Back to the cell's own CA: the Certificate goes, the operator writes the Secret.
    Api::<Cell>::all(fake.client.clone())
        .patch(
            "sg-1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"tls": {"certManager": null}}})),
        )
        .await
        .unwrap();
    reconcile_cell(&fake, &ctx, "sg-1").await;
    assert_eq!(certificates.get_opt("sg-1-tls").await.unwrap(), None);
    assert!(secrets.get_opt("sg-1-ca").await.unwrap().is_some());
    let status = get_cell(&fake, "sg-1").await.status.unwrap();
    assert_eq!(status.tls.unwrap().issuer, "cell-ca");
}

#[tokio::test]
async fn a_real_api_server_accepts_the_certificate_and_the_cells_tls_objects() {
    let client = match test_control_plane().await {
        Ok(client) => client,
        Err(reason) => {
            eprintln!("cert-manager certificate test skipped: {reason}");
            return;
        }
    };
    // The vendored CRD as a cluster installs it, without the Helm chart's labels.
    let mut crd = vendored_crd(CERT_MANAGER_CRD);
    crd.metadata.labels = None;
    crd.metadata.annotations = None;
    install_crd(&client, crd).await;

    let ns = test_namespace(&client, "cert-manager-certificate-test")
        .await
        .unwrap();
    let api = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<Certificate>(&()),
    );
    let cell = cert_manager_cell();
    let built = objects_with(&cell, &Tls::placeholders(&cell));
    let certificate = placed(&serde_json::to_value(&built.certificates[0]).unwrap(), &ns);
    // A newly established CRD may take a moment to be served for writes.
    eventually("the Certificate accepted", || async {
        server_side_apply(&api, &certificate).await.ok()
    })
    .await;
    // What the server stored holds every field the operator set: the next round writes nothing.
    let stored = serde_json::to_value(api.get("sg-1-tls").await.unwrap()).unwrap();
    assert!(apply::contains(&stored, &certificate), "{stored}");

    // The API server refuses what cert-manager could not issue: an algorithm it has not.
    let mut bad = certificate.clone();
    bad["metadata"]["name"] = json!("sg-1-broken");
    bad["spec"]["privateKey"]["algorithm"] = json!("Ed448");
    assert_unprocessable(
        server_side_apply(&api, &bad).await.unwrap_err(),
        "spec.privateKey.algorithm",
    );

    // The operator's own TLS objects of a cell on its own CA pass the API server's checks too
    // (a `kubernetes.io/tls` Secret must hold tls.crt and tls.key; the datastores' volume mode).
    let own = tls_cell();
    let objects = objects_with(&own, &round(&own, None, Timestamp::now()));
    let here = |object: &Secret| placed(&serde_json::to_value(object).unwrap(), &ns);
    let secrets = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<Secret>(&()),
    );
    for secret in objects
        .secrets
        .iter()
        .filter(|s| s.name_any().starts_with("sg-1-"))
    {
        server_side_apply(&secrets, &here(secret)).await.unwrap();
    }
    let sets = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&()),
    );
    for set in &objects.stateful_sets {
        server_side_apply(&sets, &placed(&serde_json::to_value(set).unwrap(), &ns))
            .await
            .unwrap();
    }
    // Without its key a TLS Secret is refused.
    let mut keyless = here(
        objects
            .secrets
            .iter()
            .find(|s| s.name_any() == "sg-1-tls")
            .unwrap(),
    );
    keyless["metadata"]["name"] = json!("sg-1-keyless");
    keyless["data"].as_object_mut().unwrap().remove("tls.key");
    assert_unprocessable(
        server_side_apply(&secrets, &keyless).await.unwrap_err(),
        "tls.key",
    );

    Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

/// What the Cell controller builds for `cell` with `tls` (placeholder credentials).
fn objects_with(cell: &Cell, tls: &Tls) -> titan_operator::cell::build::CellObjects {
    let credentials = Credentials::placeholders();
    let connections = connections::resolve(cell, &credentials, &connections::Offline);
    cell_build(cell, &credentials, tls, &connections, &Default::default())
}

fn stateful_set<'a>(
    objects: &'a titan_operator::cell::build::CellObjects,
    name: &str,
) -> &'a k8s_openapi::api::apps::v1::StatefulSet {
    objects
        .stateful_sets
        .iter()
        .find(|s| s.name_any() == name)
        .unwrap()
}

fn pod_of(set: &k8s_openapi::api::apps::v1::StatefulSet) -> k8s_openapi::api::core::v1::PodSpec {
    set.spec.clone().unwrap().template.spec.unwrap()
}

#[test]
fn builtin_datastores_serve_the_cells_certificate_and_the_services_ask_for_tls() {
    let cell = tls_cell();
    let first = round(&cell, None, t0());
    let objects = objects_with(&cell, &first);
    let validator = validator();
    for set in &objects.stateful_sets {
        assert_eq!(
            validate(&validator, &serde_json::to_value(set).unwrap()),
            Ok(())
        );
        let pod = pod_of(set);
        // The Secret, its files readable by the server's group only.
        let volume = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "tls")
            .unwrap();
        let secret = volume.secret.as_ref().unwrap();
        assert_eq!(
            (secret.secret_name.as_deref(), secret.default_mode),
            (Some("sg-1-tls"), Some(0o440)),
            "{}",
            set.name_any()
        );
        let mounts = pod.containers[0].volume_mounts.as_ref().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.name == "tls" && m.mount_path == "/etc/titan-tls")
        );
    }
    let args = |name: &str| {
        pod_of(stateful_set(&objects, name)).containers[0]
            .args
            .clone()
    };
    assert_eq!(
        args("postgres").unwrap(),
        [
            "postgres",
            "-c",
            "ssl=on",
            "-c",
            "ssl_cert_file=/etc/titan-tls/tls.crt",
            "-c",
            "ssl_key_file=/etc/titan-tls/tls.key"
        ]
    );
    assert_eq!(
        args("clickhouse").unwrap(),
        [
            "--",
            "--https_port=8443",
            "--openSSL.server.certificateFile=/etc/titan-tls/tls.crt",
            "--openSSL.server.privateKeyFile=/etc/titan-tls/tls.key"
        ]
    );

    // The connections ask for TLS, and the names they use are the certificate's.
    let credentials = Credentials::placeholders();
    let values = connections::resolve(&cell, &credentials, &connections::Offline)
        .datastore_values()
        .unwrap();
    assert_eq!(
        values["TITAN_POSTGRES_URL"],
        "postgres://titan:<generated:postgres-password>@postgres.titan-sg-1.svc:5432/titan?sslmode=verify-full&sslrootcert=/etc/titan-tls/ca.crt"
    );
    assert_eq!(
        values["TITAN_REDIS_URL"],
        "rediss://:<generated:redis-password>@redis.titan-sg-1.svc:6379"
    );
    assert_eq!(
        values["TITAN_CLICKHOUSE_URL"],
        "https://clickhouse.titan-sg-1.svc:8443"
    );
    let bundle = first.bundle.as_deref().unwrap();
    for host in ["postgres", "redis", "clickhouse"] {
        let name = format!("{host}.titan-sg-1.svc");
        assert_eq!(
            verify(bundle, first.certificate.as_deref().unwrap(), &name, t0()),
            Ok(())
        );
    }

    // Each service gets the CA file of the stores it reads whose URL does not name it.
    let services = services_with(&cell, &first);
    let ca_files = |name: &str| -> Vec<String> {
        let service = &services[name];
        let rendered = service_validate::validate(service, "sg-1").unwrap();
        let objects = service_build::build(service, &CellView::of(&cell), &rendered).unwrap();
        let pod = objects.deployment.spec.unwrap().template.spec.unwrap();
        pod.containers[0]
            .env
            .iter()
            .flatten()
            .filter(|e| e.name.ends_with("_CA_FILE") && e.name != "TITAN_TLS_CA_FILE")
            .map(|e| format!("{}={}", e.name, e.value.as_deref().unwrap_or_default()))
            .collect()
    };
    assert_eq!(
        ca_files("flashsale"),
        ["TITAN_REDIS_CA_FILE=/etc/titan-tls/ca.crt"]
    );
    assert_eq!(
        ca_files("analytics"),
        [
            "TITAN_REDIS_CA_FILE=/etc/titan-tls/ca.crt",
            "TITAN_CLICKHOUSE_CA_FILE=/etc/titan-tls/ca.crt"
        ]
    );

    // A renewed certificate restarts the datastores (they do not reload it), not the services.
    let renewed = round(&cell, Some(&first), t0() + days(61));
    let again = objects_with(&cell, &renewed);
    let hash = |set: &k8s_openapi::api::apps::v1::StatefulSet| {
        set.spec
            .clone()
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()[labels::SECRETS_HASH]
            .clone()
    };
    for name in ["postgres", "redis", "clickhouse"] {
        assert_ne!(
            hash(stateful_set(&objects, name)),
            hash(stateful_set(&again, name)),
            "{name}"
        );
    }
    let hashes = |o: &titan_operator::cell::build::CellObjects| {
        o.services.iter().map(secrets_hash).collect::<Vec<_>>()
    };
    assert_eq!(hashes(&objects), hashes(&again));

    // An external datastore keeps the URL its Secret gives; no CA file is set for it.
    let mut external = tls_cell();
    external.spec.datastores.redis.provider = titan_crds::cell::Provider::External;
    external.spec.datastores.redis.secret_name = Some("redis-url".into());
    assert!(
        CellView::of(&external)
            .tls_datastores
            .iter()
            .all(|store| *store != titan_crds::DatastoreKind::Redis)
    );
}

#[test]
fn the_builtin_redis_serves_tls_from_its_rendered_command_and_its_probe_passes() {
    use crate::media::{Running, free_port, program, wait_until};
    use std::process::Command;

    let redis_server = program("redis-server");
    let cell = tls_cell();
    let issued = round(&cell, None, Timestamp::now());
    let objects = objects_with(&cell, &issued);
    let pod = pod_of(stateful_set(&objects, "redis"));
    let container = &pod.containers[0];
    let command = container.command.clone().unwrap();
    let probe = container
        .readiness_probe
        .as_ref()
        .unwrap()
        .exec
        .as_ref()
        .unwrap();
    let probe = probe.command.clone().unwrap();
    assert_eq!(probe[..2], ["sh", "-c"]);

    // The pod's paths and port, moved into a temporary directory and a free port.
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::create_dir_all(&tls_dir).unwrap();
    for (key, text) in issued.tls_secret.as_ref().unwrap() {
        std::fs::write(tls_dir.join(key), text).unwrap();
    }
    let port = free_port().to_string();
    let local = |arg: &str| {
        arg.replace("/etc/titan-tls", &tls_dir.display().to_string())
            .replace("/data", &dir.path().join("data").display().to_string())
            .replace("$(REDIS_PASSWORD)", "secret")
    };
    let mut args: Vec<String> = command[1..].iter().map(|a| local(a)).collect();
    let tls_port = args.iter().position(|a| a == "--tls-port").unwrap() + 1;
    args[tls_port] = port.clone();
    assert_eq!(command[0], "redis-server");
    let log = dir.path().join("redis.log");
    let mut server = Running::start("redis-server", Command::new(redis_server).args(&args), &log);
    // The readiness probe as the kubelet runs it (with the pod's variable), against that port.
    let script = local(&probe[2]).replace("redis-cli ", &format!("redis-cli -p {port} "));
    let probe_passes = || {
        Command::new("sh")
            .args(["-c", &script])
            .env("REDIS_PASSWORD", "secret")
            .status()
            .is_ok_and(|s| s.success())
    };
    wait_until("redis over tls", Duration::from_secs(20), || {
        server.alive(&log);
        probe_passes()
    });
    // Plaintext is refused on that port: the probe without TLS fails.
    let plaintext = script.replace(&format!("--tls --cacert {}/ca.crt ", tls_dir.display()), "");
    assert_ne!(plaintext, script);
    let refused = Command::new("sh")
        .args(["-c", &plaintext])
        .env("REDIS_PASSWORD", "secret")
        .status()
        .unwrap();
    assert!(!refused.success());
}

/// The edge cell (`spec.edge`, chat off) with TLS from its own CA.
fn edge_tls_cell() -> Cell {
    let mut cell = crate::support::cell_fixture("edge-cell.yaml");
    cell.spec.tls = Some(Default::default());
    cell
}

#[test]
fn under_tls_the_gateway_reaches_each_service_over_tls_verified_by_the_cells_ca() {
    let cell = edge_tls_cell();
    let tls = round(&cell, None, t0());
    let objects = objects_with(&cell, &tls);
    let bundle = objects
        .config_maps
        .iter()
        .find(|c| c.name_any() == "sg-1-ca-bundle")
        .and_then(|c| c.data.as_ref()?.get("ca.crt").cloned());
    assert_eq!(bundle, tls.bundle);
    let validator = validator();
    let crd = vendored_crd(crate::support::BACKEND_TLS_POLICY_CRD);
    let schema = crate::support::v1_schema(&crd);
    let mut targets = Vec::new();
    for policy in &objects.backend_tls_policies {
        let value = serde_json::to_value(policy).unwrap();
        assert_eq!(validate(&validator, &value), Ok(()));
        assert!(
            kube::core::cel::Validator::new()
                .validate(&schema, &value, None)
                .is_ok(),
            "{value}"
        );
        let service = value["spec"]["targetRefs"][0]["name"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            value["spec"],
            json!({
                "targetRefs": [{"group": "", "kind": "Service", "name": service}],
                "validation": {
                    "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "sg-1-ca-bundle"}],
                    "hostname": format!("{service}.titan-sg-1.svc"),
                },
            })
        );
        // The name the Gateway verifies is one the certificate carries.
        assert_eq!(
            verify(
                tls.bundle.as_deref().unwrap(),
                tls.certificate.as_deref().unwrap(),
                value["spec"]["validation"]["hostname"].as_str().unwrap(),
                t0()
            ),
            Ok(())
        );
        targets.push(service);
    }
    // One per enabled service (chat is off in this cell).
    let expected: Vec<String> = titan_crds::ServiceKind::TITAN
        .iter()
        .filter(|k| **k != titan_crds::ServiceKind::Chat)
        .map(|k| k.as_str().to_string())
        .collect();
    assert_eq!(targets, expected);

    // Without TLS, or without the edge, none.
    let mut plain = edge_tls_cell();
    plain.spec.tls = None;
    assert!(
        objects_with(&plain, &Tls::default())
            .backend_tls_policies
            .is_empty()
    );
    let no_edge = tls_cell();
    assert!(
        objects_with(&no_edge, &round(&no_edge, None, t0()))
            .backend_tls_policies
            .is_empty()
    );
}

#[tokio::test]
async fn edge_policies_are_applied_where_served_and_the_edge_condition_says_when_not() {
    let fake = Fake::new().await;
    create_cell(&fake, &edge_tls_cell()).await;

    // Routes served but not BackendTLSPolicy: the routes go on, the condition says what to do.
    let ctx = Arc::new((*context(&fake)).clone().with_gateway_api(true));
    reconcile_cell(&fake, &ctx, "sg-1").await;
    let status = get_cell(&fake, "sg-1").await.status.unwrap();
    assert_eq!(
        condition(&status.conditions, "EdgeRoutesApplied"),
        ("False".into(), "BackendTLSPolicyNotInstalled".into())
    );

    // Served: a policy per service, and the condition is True.
    let ctx = Arc::new(
        (*context(&fake))
            .clone()
            .with_gateway_api(true)
            .with_backend_tls(true),
    );
    reconcile_cell(&fake, &ctx, "sg-1").await;
    let policies = Api::<BackendTlsPolicy>::namespaced(fake.client.clone(), "titan-sg-1");
    let names: Vec<String> = policies
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names.len(), 15, "{names:?}");
    assert!(names.contains(&"sg-1-flashsale-backend-tls".to_string()));
    let status = get_cell(&fake, "sg-1").await.status.unwrap();
    assert_eq!(
        condition(&status.conditions, "EdgeRoutesApplied"),
        ("True".into(), "RoutesApplied".into())
    );
    assert!(fake.invalid.lock().unwrap().is_empty());

    // Without TLS the policies and the bundle go; the routes stay.
    Api::<Cell>::all(fake.client.clone())
        .patch(
            "sg-1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"tls": null}})),
        )
        .await
        .unwrap();
    reconcile_cell(&fake, &ctx, "sg-1").await;
    assert!(
        policies
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let config_maps =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(fake.client.clone(), "titan-sg-1");
    assert!(
        config_maps
            .get_opt("sg-1-ca-bundle")
            .await
            .unwrap()
            .is_none()
    );
    Api::<titan_operator::cell::gateway::GrpcRoute>::namespaced(fake.client.clone(), "titan-sg-1")
        .get("sg-1-grpc")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_real_api_server_accepts_the_backend_tls_policies() {
    let client = match test_control_plane().await {
        Ok(client) => client,
        Err(reason) => {
            eprintln!("backend tls policy test skipped: {reason}");
            return;
        }
    };
    install_crd(
        &client,
        vendored_crd(crate::support::BACKEND_TLS_POLICY_CRD),
    )
    .await;
    let ns = test_namespace(&client, "backend-tls-policy-test")
        .await
        .unwrap();
    let api = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<BackendTlsPolicy>(&()),
    );
    let cell = edge_tls_cell();
    let objects = objects_with(&cell, &round(&cell, None, Timestamp::now()));
    let first = placed(
        &serde_json::to_value(&objects.backend_tls_policies[0]).unwrap(),
        &ns,
    );
    // A newly established CRD may take a moment to be served for writes.
    eventually("the BackendTLSPolicy accepted", || async {
        server_side_apply(&api, &first).await.ok()
    })
    .await;
    for policy in &objects.backend_tls_policies[1..] {
        server_side_apply(&api, &placed(&serde_json::to_value(policy).unwrap(), &ns))
            .await
            .unwrap();
    }
    let stored = serde_json::to_value(
        api.get(first["metadata"]["name"].as_str().unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(apply::contains(&stored, &first), "{stored}");
    // The server's rules hold: a policy naming no CA is refused.
    let mut bad = first.clone();
    bad["metadata"]["name"] = json!("sg-1-broken");
    bad["spec"]["validation"]
        .as_object_mut()
        .unwrap()
        .remove("caCertificateRefs");
    assert_unprocessable(
        server_side_apply(&api, &bad).await.unwrap_err(),
        "must specify either CACertificateRefs or WellKnownCACertificates",
    );
    Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}
