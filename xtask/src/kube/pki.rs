//! The control plane's keys and certificates, made with the `openssl` command (Debian's
//! `openssl` package) so xtask needs no crypto crate: a CA, the apiserver's serving
//! certificate for 127.0.0.1, one client certificate per identity, and the key pair that signs
//! service-account tokens (TokenRequest). Everything is throw-away and lives in the state
//! directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::process;

/// Paths of what `create` made.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
}

/// A client identity: its user name (certificate CN) and groups (O).
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// File stem of its certificate and key, and its kubeconfig.
    pub file: &'a str,
    pub user: &'a str,
    pub groups: &'a [&'a str],
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    process::output(Command::new("openssl").current_dir(dir).args(args))
        .map(drop)
        .context("openssl failed (Debian: apt-get install openssl)")
}

/// A P-256 key (fast to make) and a certificate signed by the CA with `extensions`.
fn signed(dir: &Path, stem: &str, subject: &str, extensions: &str) -> Result<()> {
    let (key, csr, cert, ext) = (
        format!("{stem}.key"),
        format!("{stem}.csr"),
        format!("{stem}.crt"),
        format!("{stem}.ext"),
    );
    fs::write(dir.join(&ext), extensions).with_context(|| format!("writing {ext}"))?;
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-out",
            &cert,
            "-extfile",
            &ext,
        ],
    )?;
    let _ = fs::remove_file(dir.join(csr));
    Ok(())
}

/// Makes the CA, the serving certificate and the service-account keys in `dir`.
pub fn create(dir: &Path) -> Result<Pki> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=titan-test-kubernetes-ca",
        ],
    )?;
    // The in-cluster names too: a client that follows the `kubernetes` Service's endpoint
    // (127.0.0.1 here) checks the certificate against them.
    signed(
        dir,
        "apiserver",
        "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,\
         DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n",
    )?;
    // RS256: what every TokenRequest client and the apiserver's defaults expect.
    openssl(dir, &["genrsa", "-out", "sa.key", "2048"])?;
    openssl(dir, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    Ok(Pki {
        ca_cert: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        service_account_key: dir.join("sa.key"),
        service_account_pub: dir.join("sa.pub"),
    })
}

/// Makes a client certificate for `identity` and a kubeconfig using it; returns the
/// kubeconfig's path.
pub fn kubeconfig_for(dir: &Path, server: &str, identity: Identity<'_>) -> Result<PathBuf> {
    let subject = std::iter::once(format!("/CN={}", identity.user))
        .chain(identity.groups.iter().map(|g| format!("/O={g}")))
        .collect::<String>();
    signed(
        dir,
        identity.file,
        &subject,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )?;
    let path = dir.join(format!("{}.kubeconfig", identity.file));
    let text = kubeconfig(
        server,
        &dir.join("ca.crt"),
        identity.user,
        &format!(
            "    client-certificate: {}\n    client-key: {}\n",
            dir.join(format!("{}.crt", identity.file)).display(),
            dir.join(format!("{}.key", identity.file)).display()
        ),
    );
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A one-cluster, one-user kubeconfig; `credentials` are the user's indented fields.
pub fn kubeconfig(server: &str, ca: &Path, user: &str, credentials: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: titan-test\n  cluster:\n    \
         server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {user}\n  user:\n\
         {credentials}contexts:\n- name: titan-test\n  context:\n    cluster: titan-test\n    \
         user: {user}\ncurrent-context: titan-test\n",
        ca = ca.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_names_one_cluster_user_and_context() {
        let text = kubeconfig(
            "https://127.0.0.1:6443",
            Path::new("/k/ca.crt"),
            "admin",
            "    token: abc\n",
        );
        assert_eq!(
            text,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: titan-test\n  cluster:\n    \
             server: https://127.0.0.1:6443\n    certificate-authority: /k/ca.crt\nusers:\n\
             - name: admin\n  user:\n    token: abc\ncontexts:\n- name: titan-test\n  context:\n    \
             cluster: titan-test\n    user: admin\ncurrent-context: titan-test\n"
        );
    }
}
