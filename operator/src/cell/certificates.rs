//! TLS of a cell (`spec.tls`): the certificate every Titan service of the cell serves and the
//! CA bundle they verify each other with, both in Secret `<cell>-tls` (`tls.crt`, `tls.key`,
//! `ca.crt`), which the services mount and kit reloads without a restart.
//!
//! Without cert-manager the operator is the cell's CA ([`resolve`], pure, with the clock passed
//! in): the CA's key stays in Secret `<cell>-ca`, which no pod mounts. Every round reads both
//! Secrets back and keeps what is current, so a re-reconcile or an operator restart changes
//! nothing; it renews the services' certificate 30 days before its 90 expire (kit picks the new
//! one up within its reload period, calls in flight carry on), and rotates the CA itself in
//! steps no client notices: a successor is made a year before the CA expires and trusted at once
//! (the bundle changes, so the pods roll onto it), signs from the moment the CA has less than a
//! certificate's lifetime left, and the old CA stays trusted until it expires. The bundle is
//! ordered by expiry, so promoting the successor does not change it and rolls no pod.
//!
//! With `spec.tls.certManager` a cert-manager `Certificate` writes the same Secret ([`build`]);
//! the operator only reads it back ([`observe_cert_manager`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
    jiff::{SignedDuration, Timestamp},
};
use kube::{CustomResource, ResourceExt};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use titan_crds::{
    Cell, ServiceKind,
    cell::{CertManagerTls, TlsStatus},
    common::condition::CERTIFICATES_READY,
};

use super::build::CellMeta;
use crate::{
    Error,
    conditions::Observed,
    shared::{CellView, TLS_CA_KEY as CA_KEY, TLS_CERT_KEY as CERT_KEY, TLS_KEY_KEY as KEY_KEY},
};

/// How long the cell's CA is valid.
pub const CA_LIFETIME: SignedDuration = SignedDuration::from_hours(24 * 3650);
/// How long before the CA expires its successor is made and trusted.
pub const SUCCESSOR_BEFORE: SignedDuration = SignedDuration::from_hours(24 * 365);
/// How long the services' certificate is valid (as cert-manager's default).
pub const CERTIFICATE_LIFETIME: SignedDuration = SignedDuration::from_hours(24 * 90);
/// How long before it expires the services' certificate is renewed (as cert-manager's default,
/// a third of its lifetime).
pub const RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(24 * 30);
/// How far back a new certificate's validity starts: nodes' clocks disagree a little.
const BACKDATE: SignedDuration = SignedDuration::from_mins(5);

/// Keys of Secret `<cell>-ca`: the signing CA, its successor, and the CA it replaced.
const SIGNER_CERT: &str = "ca.crt";
const SIGNER_KEY: &str = "ca.key";
const SUCCESSOR_CERT: &str = "successor.crt";
const SUCCESSOR_KEY: &str = "successor.key";
const RETIRED_CERT: &str = "retired.crt";

/// `issuer` in the status of a cell whose CA is the operator's.
pub const CELL_CA: &str = "cell-ca";
/// `issuer` in the status of a cell on cert-manager.
pub const CERT_MANAGER: &str = "cert-manager";
/// The `commerce.titan.dev/component` of the TLS objects.
pub const COMPONENT: &str = "tls";

/// Name of a cell's CA Secret (its key never leaves it).
pub fn ca_secret_name(cell: &str) -> String {
    format!("{cell}-ca")
}

/// The names the services' certificate is valid for: each Titan service by its short name (how
/// the services of a cell call each other) and by `<service>.<namespace>`, and every Service of
/// the namespace by its `svc` names (a wildcard needs two labels after it, so the middle form
/// is listed per service). All sixteen services, enabled or not, so that enabling one does not
/// reissue the certificate.
pub fn dns_names(namespace: &str) -> Vec<String> {
    let services = ServiceKind::TITAN.iter().map(|kind| kind.as_str());
    services
        .clone()
        .map(str::to_string)
        .chain(services.map(|service| format!("{service}.{namespace}")))
        .chain([
            format!("*.{namespace}.svc"),
            format!("*.{namespace}.svc.cluster.local"),
        ])
        .collect()
}

/// What the round knows of a cell's TLS, for the build and status stages.
#[derive(Clone, PartialEq, Default)]
pub struct Tls {
    /// Data of Secret `<cell>-ca`, when the operator is the cell's CA.
    pub ca_secret: Option<BTreeMap<String, String>>,
    /// Data of Secret `<cell>-tls`, when the operator writes it.
    pub tls_secret: Option<BTreeMap<String, String>>,
    /// The CA bundle the services verify with, once a certificate is issued: its hash rolls
    /// the pods when it changes. None while the cell asks for TLS and has no certificate yet
    /// (the services wait), and when it does not ask.
    pub bundle: Option<String>,
    /// The services' certificate (PEM) once issued: the builtin datastores, which do not
    /// reload it, restart when it changes.
    pub certificate: Option<String>,
    /// `status.tls`, while the cell asks for TLS.
    pub status: Option<TlsStatus>,
    /// The `CertificatesReady` condition, while the cell asks for TLS.
    pub condition: Option<Observed>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Private keys never reach a log line.
        f.debug_struct("Tls")
            .field("status", &self.status)
            .field("condition", &self.condition)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Whether the cell asks for TLS but has no certificate yet: its services must wait.
    pub fn pending(&self) -> bool {
        self.status.is_some() && self.bundle.is_none()
    }

    /// Stand-ins for `titan-operator render`, which has no cluster to keep a CA in and must not
    /// invent keys that would never be used.
    pub fn placeholders(cell: &Cell) -> Self {
        let Some(tls) = &cell.spec.tls else {
            return Self::default();
        };
        let placeholder = |keys: &[&str]| {
            keys.iter()
                .map(|key| (key.to_string(), format!("<generated:{key}>")))
                .collect()
        };
        let own = tls.cert_manager.is_none();
        Self {
            ca_secret: own.then(|| placeholder(&[SIGNER_CERT, SIGNER_KEY])),
            tls_secret: own.then(|| placeholder(&[CA_KEY, CERT_KEY, KEY_KEY])),
            bundle: Some(format!("<generated:{CA_KEY}>")),
            certificate: Some(format!("<generated:{CERT_KEY}>")),
            status: Some(TlsStatus {
                issuer: if own { CELL_CA } else { CERT_MANAGER }.into(),
                ..Default::default()
            }),
            condition: None,
        }
    }
}

/// A certificate as read back from PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    not_after: Timestamp,
    names: BTreeSet<String>,
    /// The subject public key's bits, compared with a key's to tell that they belong together.
    public_key: Vec<u8>,
    ca: bool,
}

impl Parsed {
    /// The first certificate of `pem`; None when there is none or it does not parse.
    fn read(pem: &str) -> Option<Self> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
        let cert = block.parse_x509().ok()?;
        let names = match cert.subject_alternative_name() {
            Ok(Some(extension)) => extension
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                    _ => None,
                })
                .collect(),
            _ => BTreeSet::new(),
        };
        Some(Self {
            not_after: Timestamp::from_second(cert.validity().not_after.timestamp()).ok()?,
            names,
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            ca: cert.is_ca(),
        })
    }

    /// Whether `key` (PEM) is this certificate's private key.
    fn belongs_to(&self, key: &str) -> bool {
        KeyPair::from_pem(key).is_ok_and(|key| key.public_key_raw() == self.public_key)
    }
}

/// Whether the first certificate of `pem` carries the signature of `ca` (PEM), checked
/// cryptographically: another CA of the same name does not pass.
fn signed_by(pem: &str, ca: &str) -> bool {
    let read = |pem: &str| x509_parser::pem::parse_x509_pem(pem.as_bytes()).map(|(_, p)| p);
    let (Ok(cert), Ok(ca)) = (read(pem), read(ca)) else {
        return false;
    };
    match (cert.parse_x509(), ca.parse_x509()) {
        (Ok(cert), Ok(ca)) => cert.verify_signature(Some(ca.public_key())).is_ok(),
        _ => false,
    }
}

/// A CA of the cell: its certificate and key, as kept in Secret `<cell>-ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authority {
    cert: String,
    key: String,
    parsed: Parsed,
}

impl Authority {
    /// The CA kept under `cert`/`key` of `data`, if it is a CA whose key matches and that has
    /// not expired at `now`.
    fn kept(
        data: &BTreeMap<String, String>,
        cert: &str,
        key: &str,
        now: Timestamp,
    ) -> Option<Self> {
        let (cert, key) = (data.get(cert)?, data.get(key)?);
        let parsed = Parsed::read(cert)?;
        (parsed.ca && parsed.not_after > now && parsed.belongs_to(key)).then(|| Self {
            cert: cert.clone(),
            key: key.clone(),
            parsed,
        })
    }

    /// A new CA for `cell`, valid from `now` for [`CA_LIFETIME`]. Its name carries the moment it
    /// was made, so a person reading a certificate's issuer can tell the generations apart.
    fn generate(cell: &str, now: Timestamp) -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Titan");
        params.distinguished_name.push(
            DnType::CommonName,
            format!("titan cell {cell} ca {}", now.as_second()),
        );
        params.not_before = datetime(now - BACKDATE)?;
        params.not_after = datetime(now + CA_LIFETIME)?;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?.pem();
        let parsed = Parsed::read(&cert).ok_or(rcgen::Error::CouldNotParseCertificate)?;
        Ok(Self {
            cert,
            key: key.serialize_pem(),
            parsed,
        })
    }

    /// The services' certificate for `names`, signed by this CA, valid from `now` for
    /// [`CERTIFICATE_LIFETIME`] and never past the CA.
    fn issue(&self, names: &[String], now: Timestamp) -> Result<Leaf, rcgen::Error> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert, KeyPair::from_pem(&self.key)?)?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = DistinguishedName::new();
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = datetime(now - BACKDATE)?;
        params.not_after = datetime((now + CERTIFICATE_LIFETIME).min(self.parsed.not_after))?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?.pem();
        let parsed = Parsed::read(&cert).ok_or(rcgen::Error::CouldNotParseCertificate)?;
        Ok(Leaf {
            cert,
            key: key.serialize_pem(),
            parsed,
        })
    }
}

/// The services' certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Leaf {
    cert: String,
    key: String,
    parsed: Parsed,
}

impl Leaf {
    /// The certificate kept in `data` (Secret `<cell>-tls`), if it is still good at `now`: its
    /// key matches, `signer` signed it, it is valid for exactly `names`, and it is not due for
    /// renewal.
    fn kept(
        data: &BTreeMap<String, String>,
        signer: &Authority,
        names: &[String],
        now: Timestamp,
    ) -> Option<Self> {
        let (cert, key) = (data.get(CERT_KEY)?, data.get(KEY_KEY)?);
        let parsed = Parsed::read(cert)?;
        let wanted: BTreeSet<String> = names.iter().cloned().collect();
        let good = parsed.belongs_to(key)
            && signed_by(cert, &signer.cert)
            && parsed.names == wanted
            && parsed.not_after - RENEW_BEFORE > now;
        good.then(|| Self {
            cert: cert.clone(),
            key: key.clone(),
            parsed,
        })
    }
}

fn datetime(at: Timestamp) -> Result<time::OffsetDateTime, rcgen::Error> {
    time::OffsetDateTime::from_unix_timestamp(at.as_second()).map_err(|_| rcgen::Error::Time)
}

/// The data of a Secret as text; a value that is not UTF-8 reads as absent.
fn text_data(secret: Option<&Secret>) -> BTreeMap<String, String> {
    secret
        .and_then(|s| s.data.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.clone(), String::from_utf8(value.0.clone()).ok()?)))
        .collect()
}

/// The operator's CA and certificate of `cell` at `now`, from what Secrets `<cell>-ca` and
/// `<cell>-tls` hold (`ca`, `tls`): kept where current, made or renewed where not (see the
/// module's comment for when).
pub fn resolve(
    cell: &Cell,
    ca: &BTreeMap<String, String>,
    tls: &BTreeMap<String, String>,
    now: Timestamp,
) -> Result<Tls, Error> {
    let name = cell.name_any();
    let failed = |source| Error::Certificate {
        cell: name.clone(),
        source,
    };
    let names = dns_names(&cell.namespace_name());

    let signer = Authority::kept(ca, SIGNER_CERT, SIGNER_KEY, now);
    let successor = Authority::kept(ca, SUCCESSOR_CERT, SUCCESSOR_KEY, now);
    let retired = ca
        .get(RETIRED_CERT)
        .filter(|cert| Parsed::read(cert).is_some_and(|p| p.not_after > now))
        .cloned();
    let (signer, mut successor, mut retired) = match signer {
        Some(signer) => (signer, successor, retired),
        // No usable CA (a new cell, or its Secret was lost or broken): a new one, and nothing
        // else of the old Secret is trusted.
        None => (Authority::generate(&name, now).map_err(failed)?, None, None),
    };
    let mut signer = signer;
    if signer.parsed.not_after - SUCCESSOR_BEFORE <= now && successor.is_none() {
        successor = Some(Authority::generate(&name, now).map_err(failed)?);
    }
    // From here the old CA could not sign a certificate for its whole lifetime: the successor
    // signs, and the old CA stays trusted for what it signed until it expires.
    if signer.parsed.not_after - CERTIFICATE_LIFETIME <= now
        && let Some(next) = successor.take()
    {
        retired = Some(std::mem::replace(&mut signer, next).cert);
    }
    let leaf = match Leaf::kept(tls, &signer, &names, now) {
        Some(leaf) => leaf,
        None => signer.issue(&names, now).map_err(failed)?,
    };

    let mut trusted: Vec<(Timestamp, &str)> = vec![(signer.parsed.not_after, &signer.cert)];
    if let Some(next) = &successor {
        trusted.push((next.parsed.not_after, &next.cert));
    }
    if let Some(old) = retired
        .as_deref()
        .and_then(|c| Some((Parsed::read(c)?.not_after, c)))
    {
        trusted.push(old);
    }
    trusted.sort();
    let bundle: String = trusted.iter().map(|(_, cert)| *cert).collect();

    let mut ca_secret = BTreeMap::from([
        (SIGNER_CERT.to_string(), signer.cert.clone()),
        (SIGNER_KEY.to_string(), signer.key.clone()),
    ]);
    if let Some(next) = &successor {
        ca_secret.insert(SUCCESSOR_CERT.into(), next.cert.clone());
        ca_secret.insert(SUCCESSOR_KEY.into(), next.key.clone());
    }
    if let Some(old) = &retired {
        ca_secret.insert(RETIRED_CERT.into(), old.clone());
    }
    let renews_at = leaf.parsed.not_after - RENEW_BEFORE;
    Ok(Tls {
        ca_secret: Some(ca_secret),
        tls_secret: Some(BTreeMap::from([
            (CA_KEY.to_string(), bundle.clone()),
            (CERT_KEY.to_string(), leaf.cert.clone()),
            (KEY_KEY.to_string(), leaf.key.clone()),
        ])),
        bundle: Some(bundle),
        certificate: Some(leaf.cert),
        status: Some(TlsStatus {
            issuer: CELL_CA.into(),
            not_after: Some(leaf.parsed.not_after.to_string()),
            renews_at: Some(renews_at.to_string()),
            ca_not_after: Some(signer.parsed.not_after.to_string()),
        }),
        condition: Some(Observed::new(
            CERTIFICATES_READY,
            true,
            "Issued",
            format!(
                "the services serve a certificate from the cell's CA (Secret {}), valid until {}; the operator renews it from {renews_at}",
                ca_secret_name(&name),
                leaf.parsed.not_after
            ),
        )),
    })
}

/// A cell's TLS this round, from the Secrets it has (`secrets`, the cell's labelled ones):
/// nothing without `spec.tls`, what cert-manager issued on `spec.tls.certManager`
/// (`cert_manager`: whether it is installed), else the operator's CA and certificate at `now`.
/// A paused cell (`spec.operation.reconciliationPaused`) reports what its Secrets hold and
/// mints nothing: nothing of a paused round is applied, and keys made anew every round would
/// rewrite its status every round.
pub fn of(
    cell: &Cell,
    secrets: &[Secret],
    cert_manager: bool,
    now: Timestamp,
) -> Result<Tls, Error> {
    let Some(spec) = &cell.spec.tls else {
        return Ok(Tls::default());
    };
    let data = |name: &str| text_data(secrets.iter().find(|s| s.name_any() == name));
    let tls = data(&CellView::of(cell).tls_secret());
    let Some(issuer) = &spec.cert_manager else {
        let ca = data(&ca_secret_name(&cell.name_any()));
        let resolved = resolve(cell, &ca, &tls, now)?;
        let minted =
            resolved.ca_secret.as_ref() != Some(&ca) || resolved.tls_secret.as_ref() != Some(&tls);
        if cell.spec.operation.reconciliation_paused && minted {
            return Ok(Tls {
                status: Some(TlsStatus {
                    issuer: CELL_CA.into(),
                    ..Default::default()
                }),
                condition: Some(Observed::new(
                    CERTIFICATES_READY,
                    false,
                    "ReconciliationPaused",
                    "the cell's certificate is missing or due for renewal, and reconciliation is paused: the operator makes it when spec.operation.reconciliationPaused is off",
                )),
                ..Default::default()
            });
        }
        return Ok(resolved);
    };
    Ok(observe_cert_manager(cell, issuer, cert_manager, &tls, now))
}

/// What cert-manager issued for `cell` so far, from Secret `<cell>-tls` (`tls`): whether
/// cert-manager is installed (`installed`) and the Secret holds a current certificate with its
/// key and a CA bundle.
pub fn observe_cert_manager(
    cell: &Cell,
    cert_manager: &CertManagerTls,
    installed: bool,
    tls: &BTreeMap<String, String>,
    now: Timestamp,
) -> Tls {
    let view = CellView::of(cell);
    let secret = view.tls_secret();
    let issuer = &cert_manager.issuer_ref;
    let issuer = format!("{} {}", issuer.kind.as_str(), issuer.name);
    let waiting = |reason: &'static str, message: String| Tls {
        status: Some(TlsStatus {
            issuer: CERT_MANAGER.into(),
            ..Default::default()
        }),
        condition: Some(Observed::new(CERTIFICATES_READY, false, reason, message)),
        ..Default::default()
    };
    if !installed {
        return waiting(
            "CertManagerNotInstalled",
            format!(
                "spec.tls.certManager asks for a certificate from {issuer}, but this cluster does not serve cert-manager's Certificate (cert-manager.io/v1): install cert-manager and restart the operator, or remove spec.tls.certManager to use the cell's own CA; the services wait"
            ),
        );
    }
    let leaf = tls
        .get(CERT_KEY)
        .and_then(|cert| Parsed::read(cert))
        .filter(|leaf| tls.get(KEY_KEY).is_some_and(|key| leaf.belongs_to(key)));
    let Some(leaf) = leaf.filter(|leaf| leaf.not_after > now) else {
        return waiting(
            "CertificateNotIssued",
            format!(
                "waiting for cert-manager to issue Certificate {secret} from {issuer} into Secret {secret}: kubectl describe certificate -n {} {secret} says why it has not; the services wait",
                cell.namespace_name()
            ),
        );
    };
    let Some(bundle) = tls
        .get(CA_KEY)
        .filter(|bundle| Parsed::read(bundle).is_some_and(|ca| ca.ca))
    else {
        return waiting(
            "IssuerWithoutCA",
            format!(
                "{issuer} issued Secret {secret} without a CA certificate in ca.crt, which the services need to verify each other: use a CA issuer (cert-manager's CA or Vault issuer); the services wait"
            ),
        );
    };
    Tls {
        ca_secret: None,
        tls_secret: None,
        bundle: Some(bundle.clone()),
        certificate: tls.get(CERT_KEY).cloned(),
        status: Some(TlsStatus {
            issuer: CERT_MANAGER.into(),
            not_after: Some(leaf.not_after.to_string()),
            renews_at: None,
            ca_not_after: None,
        }),
        condition: Some(Observed::new(
            CERTIFICATES_READY,
            true,
            "Issued",
            format!(
                "the services serve the certificate cert-manager issued from {issuer} (Secret {secret}), valid until {}; cert-manager renews it",
                leaf.not_after
            ),
        )),
    }
}

/// A cert-manager `Certificate` (`cert-manager.io/v1`), typed down to the fields Titan sets.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "Certificate",
    namespaced,
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// The Secret cert-manager writes (`tls.crt`, `tls.key`, `ca.crt`).
    pub secret_name: String,
    /// Labels cert-manager puts on that Secret: the cell's, so the operator sees it.
    pub secret_template: SecretTemplate,
    /// The names the certificate is valid for.
    pub dns_names: Vec<String>,
    /// Its lifetime (`2160h`).
    pub duration: String,
    /// How long before expiry cert-manager renews it (`720h`).
    pub renew_before: String,
    /// What it may be used for: serving and calling.
    pub usages: Vec<String>,
    /// A fresh ECDSA P-256 key at every renewal.
    pub private_key: PrivateKey,
    /// The issuer.
    pub issuer_ref: CertificateIssuerRef,
}

/// `spec.secretTemplate` of a `Certificate`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SecretTemplate {
    /// Labels of the Secret.
    pub labels: BTreeMap<String, String>,
}

/// `spec.privateKey` of a `Certificate`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKey {
    /// `ECDSA`.
    pub algorithm: String,
    /// 256.
    pub size: i32,
    /// `Always`: a renewal also renews the key.
    pub rotation_policy: String,
}

/// `spec.issuerRef` of a `Certificate`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct CertificateIssuerRef {
    /// Name of the issuer.
    pub name: String,
    /// `Issuer` or `ClusterIssuer`.
    pub kind: String,
    /// Its API group.
    pub group: String,
}

/// The Secrets and the `Certificate` of a cell's TLS: Secret `<cell>-ca` and `<cell>-tls` with
/// the operator's CA, the `Certificate` with cert-manager, nothing without `spec.tls`.
pub fn build(cell_meta: &CellMeta, tls: &Tls) -> (Vec<Secret>, Vec<Certificate>) {
    let cell = cell_meta.cell;
    let view = CellView::of(cell);
    let secret = |meta: ObjectMeta, type_: &str, data: &BTreeMap<String, String>| Secret {
        metadata: meta,
        type_: Some(type_.into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), k8s_openapi::ByteString(v.clone().into_bytes())))
                .collect(),
        ),
        ..Default::default()
    };
    let mut secrets = Vec::new();
    if let Some(data) = &tls.ca_secret {
        secrets.push(secret(
            cell_meta.meta(&ca_secret_name(&cell_meta.name), COMPONENT),
            "Opaque",
            data,
        ));
    }
    if let Some(data) = &tls.tls_secret {
        secrets.push(secret(
            cell_meta.meta(&view.tls_secret(), COMPONENT),
            "kubernetes.io/tls",
            data,
        ));
    }
    let certificates = cell
        .spec
        .tls
        .as_ref()
        .and_then(|t| t.cert_manager.as_ref())
        .map(|cert_manager| {
            let issuer = &cert_manager.issuer_ref;
            let mut certificate = Certificate::new(
                &view.tls_secret(),
                CertificateSpec {
                    secret_name: view.tls_secret(),
                    secret_template: SecretTemplate {
                        labels: cell_meta.labels(COMPONENT),
                    },
                    dns_names: dns_names(&cell_meta.namespace),
                    duration: format!("{}h", CERTIFICATE_LIFETIME.as_hours()),
                    renew_before: format!("{}h", RENEW_BEFORE.as_hours()),
                    usages: [
                        "digital signature",
                        "key encipherment",
                        "server auth",
                        "client auth",
                    ]
                    .map(String::from)
                    .to_vec(),
                    private_key: PrivateKey {
                        algorithm: "ECDSA".into(),
                        size: 256,
                        rotation_policy: "Always".into(),
                    },
                    issuer_ref: CertificateIssuerRef {
                        name: issuer.name.clone(),
                        kind: issuer.kind.as_str().into(),
                        group: issuer.group.clone(),
                    },
                },
            );
            certificate.metadata = cell_meta.meta(&view.tls_secret(), COMPONENT);
            certificate
        })
        .into_iter()
        .collect();
    (secrets, certificates)
}
