//! The thin layer that writes: server-side apply (field manager `titan-operator`, force) of a
//! desired object unless the live one already matches, and pruning of objects a round did not
//! apply. Writes are skipped rather than left to the server so that an unchanged spec costs no
//! request at all, and an interceptor counting writes sees zero.

use std::{collections::BTreeSet, fmt::Debug};

use k8s_openapi::NamespaceResourceScope;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    core::DeserializeGuard,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Error, MANAGER, labels};

/// Hash of an object's desired state, stamped on it as [`labels::APPLIED_HASH`].
///
/// A field the operator stops setting changes the hash, so the next apply is sent and the
/// server releases (removes) the field; a subset check alone would never notice.
pub fn stamp<K: Resource + Serialize>(object: &mut K) -> Result<(), Error>
where
    K::DynamicType: Default,
{
    let value = serde_json::to_value(&*object).map_err(|source| Error::Serialize {
        kind: kind_of::<K>(),
        name: object.meta().name.clone().unwrap_or_default(),
        source,
    })?;
    let hash = hex::encode(&Sha256::digest(value.to_string().as_bytes())[..16]);
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(labels::APPLIED_HASH.to_string(), hash);
    Ok(())
}

/// Whether `live` already holds everything `desired` says (fields the server defaulted or other
/// managers own may be extra). Numbers compare by value because the server may re-encode them.
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| contains(lv, dv))),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| contains(lv, dv))
        }
        (Value::Number(l), Value::Number(d)) => l.as_f64() == d.as_f64(),
        (l, d) => l == d,
    }
}

/// The kind of `K`, for error messages.
pub(crate) fn kind_of<K: Resource>() -> String
where
    K::DynamicType: Default,
{
    K::kind(&Default::default()).into_owned()
}

/// Applies `desired` unless `live` already matches it (stamping the applied hash first), and
/// returns the object as the server now has it.
pub async fn apply<K>(api: &Api<K>, mut desired: K, live: Option<&K>) -> Result<K, Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    stamp(&mut desired)?;
    let name = desired.meta().name.clone().ok_or(Error::Unnamed {
        kind: kind_of::<K>(),
    })?;
    if let Some(live) = live {
        let serialize = |o: &K| {
            serde_json::to_value(o).map_err(|source| Error::Serialize {
                kind: kind_of::<K>(),
                name: name.clone(),
                source,
            })
        };
        if contains(&serialize(live)?, &serialize(&desired)?) {
            return Ok(live.clone());
        }
    }
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(Error::api("apply", kind_of::<K>(), name.clone()))
}

/// Lists the objects of kind `K` in `namespace` carrying all of `selector`: what a controller
/// built there last time.
pub async fn list<K>(client: &Client, namespace: &str, selector: &str) -> Result<Vec<K>, Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    // Each item is decoded on its own: one object of a schema this operator does not know (a
    // `Service` written by a newer version) is skipped and logged instead of failing the whole
    // list, and with it every round of the cell. Applying the desired object of that name
    // rewrites it.
    let api: Api<DeserializeGuard<K>> = Api::namespaced(client.clone(), namespace);
    let items = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(Error::api("list", kind_of::<K>(), namespace.to_string()))?
        .items;
    Ok(items
        .into_iter()
        .filter_map(|item| match item.0 {
            Ok(object) => Some(object),
            Err(invalid) => {
                tracing::warn!(
                    kind = %kind_of::<K>(),
                    name = ?invalid.metadata.name,
                    namespace,
                    error = %invalid.error,
                    "skipping an object that does not deserialize"
                );
                None
            }
        })
        .collect())
}

/// Applies each of `desired` unless its live counterpart (same name in `live`) already matches
/// it; returns the objects as the server now has them.
pub async fn apply_each<K>(api: &Api<K>, desired: Vec<K>, live: &[K]) -> Result<Vec<K>, Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let mut applied = Vec::with_capacity(desired.len());
    for object in desired {
        let current = live.iter().find(|l| l.name_any() == object.name_any());
        applied.push(apply(api, object, current).await?);
    }
    Ok(applied)
}

/// Applies `desired` in `namespace` and prunes what was built before (`live`) and is no longer
/// wanted, keeping the names in `also_keep` although this round did not build them; returns
/// the applied objects.
pub async fn sync<K>(
    client: &Client,
    namespace: &str,
    desired: Vec<K>,
    live: &[K],
    also_keep: &[String],
) -> Result<Vec<K>, Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let keep: BTreeSet<String> = also_keep
        .iter()
        .cloned()
        .chain(desired.iter().map(ResourceExt::name_any))
        .collect();
    let applied = apply_each(&api, desired, live).await?;
    prune(&api, live, &keep).await?;
    Ok(applied)
}

/// Deletes every object of `live` that the operator manages and whose name is not in `keep`;
/// returns how many it deleted.
pub async fn prune<K>(api: &Api<K>, live: &[K], keep: &BTreeSet<String>) -> Result<usize, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let mut deleted = 0;
    for object in live {
        let managed = object.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(MANAGER);
        let name = object.name_any();
        if !managed || keep.contains(&name) || object.meta().deletion_timestamp.is_some() {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted += 1,
            // Someone else removed it first: that is what pruning wanted.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(Error::api("delete", kind_of::<K>(), name)(e)),
        }
    }
    Ok(deleted)
}

/// Writes `status` to the status subresource of `name` by server-side apply, so only the
/// status fields the operator owns change.
pub async fn write_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
    S: Serialize,
{
    let dt = Default::default();
    let body = serde_json::json!({
        "apiVersion": K::api_version(&dt),
        "kind": K::kind(&dt),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::api("patch status", kind_of::<K>(), name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::contains;

    #[test]
    fn extra_live_fields_are_allowed_but_differences_are_not() {
        let live = json!({"a": 1, "b": {"c": [ {"x": 1, "y": 2} ]}, "z": true});
        assert!(contains(&live, &json!({"b": {"c": [ {"x": 1} ]}})));
        assert!(contains(&live, &json!({"a": 1.0})));
        assert!(!contains(&live, &json!({"a": 2})));
        assert!(!contains(&live, &json!({"b": {"c": []}})));
        assert!(!contains(&live, &json!({"missing": null})));
    }
}
