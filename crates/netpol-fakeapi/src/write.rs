//! The writes of the HTTP face: create (`POST` to a collection), replace (`PUT`), patch (`PATCH`) and delete
//! (`DELETE` of an object), answered as a real kube-apiserver answers them. Every write goes through the store's
//! [`admit`](Store::admit), [`prepare`](Store::prepare) and [`commit`](Store::commit) (or
//! [`delete`](Store::delete)), as [`FakeApiServer::put`](crate::FakeApiServer::put) does, so watches see its event.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::http::{json_response, lock, ApiError, Params, Request, Shared};
use crate::kind::Kind;
use crate::patch::{json_patch, merge_patch, strategic_merge_patch, PatchError};
use crate::store::{ObjectKey, PutError, Store};
use crate::time::now_rfc3339;

/// Where a write goes: the kind and namespace of the path, and the object's name (`None` for a create).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target<'a> {
    pub kind: Kind,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl Target<'_> {
    fn key(&self, name: &str) -> ObjectKey {
        let namespace = if self.kind.is_namespaced() { self.namespace.unwrap_or_default() } else { "" };
        ObjectKey { kind: self.kind, namespace: namespace.to_owned(), name: name.to_owned() }
    }
}

/// Serves a write: `POST` when `target.name` is `None`, else `PUT`, `PATCH` or `DELETE` (the router has checked
/// the method against the path).
pub(crate) fn object(
    shared: &Shared,
    request: &Request<'_>,
    params: &Params,
    target: Target<'_>,
) -> Result<Response, ApiError> {
    match (request.method.as_str(), target.name) {
        ("POST", _) => create(shared, request, params, target),
        ("PUT", Some(name)) => replace(shared, request, params, target, name),
        ("PATCH", Some(name)) => patch(shared, request, params, target, name),
        (_, Some(name)) => delete(shared, request, params, target, name),
        (_, None) => Err(ApiError::bad_request("a write needs an object's path".to_owned())),
    }
}

fn create(shared: &Shared, request: &Request<'_>, params: &Params, target: Target<'_>) -> Result<Response, ApiError> {
    let mut obj = decode_object(request)?;
    check_type(&mut obj, target.kind)?;
    check_namespace(&mut obj, target)?;
    let mut store = lock(&shared.store);
    generate_name(&mut obj, store.revision());
    let (key, obj) = store.admit(obj).map_err(|e| put_error(e, target.kind))?;
    if store.get(&key).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{}\" already exists", target.kind.resource(), key.name),
        )
        .with_details(ApiError::object_details(target.kind, &key.name)));
    }
    let obj = store.prepare(&key, obj, &now_rfc3339());
    Ok(json_response(StatusCode::CREATED, &commit(&mut store, params, key, obj)))
}

fn replace(
    shared: &Shared,
    request: &Request<'_>,
    params: &Params,
    target: Target<'_>,
    name: &str,
) -> Result<Response, ApiError> {
    let mut obj = decode_object(request)?;
    check_type(&mut obj, target.kind)?;
    check_namespace(&mut obj, target)?;
    check_name(&obj, name)?;
    let mut store = lock(&shared.store);
    let current = store.get(&target.key(name)).ok_or_else(|| ApiError::not_found(target.kind, name))?;
    check_preconditions(target.kind, name, &obj, current)?;
    save(&mut store, params, target.kind, obj, StatusCode::OK)
}

fn patch(
    shared: &Shared,
    request: &Request<'_>,
    params: &Params,
    target: Target<'_>,
    name: &str,
) -> Result<Response, ApiError> {
    let kind = target.kind;
    let content_type = request.content_type();
    let mut store = lock(&shared.store);
    let current = store.get(&target.key(name)).cloned();
    let existing = || current.clone().ok_or_else(|| ApiError::not_found(kind, name));
    let (mut obj, code) = match content_type.as_str() {
        "application/merge-patch+json" => {
            let mut obj = existing()?;
            merge_patch(&mut obj, &decode_json(request)?);
            (obj, StatusCode::OK)
        }
        "application/json-patch+json" => {
            let mut obj = existing()?;
            json_patch(&mut obj, &decode_json(request)?).map_err(patch_error)?;
            (obj, StatusCode::OK)
        }
        "application/strategic-merge-patch+json" if kind.is_crd() => {
            return Err(unsupported_media_type(&content_type, kind));
        }
        "application/strategic-merge-patch+json" => {
            let mut obj = existing()?;
            strategic_merge_patch(&mut obj, &decode_json(request)?).map_err(patch_error)?;
            (obj, StatusCode::OK)
        }
        "application/apply-patch+yaml" => {
            if params.field_manager.is_none() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply \
                     patch"
                        .to_owned(),
                ));
            }
            let applied = decode_yaml(request)?;
            if !applied.is_object() {
                return Err(ApiError::bad_request("an apply patch is a YAML or JSON object".to_owned()));
            }
            // Server-side apply as create-or-merge: no field ownership, so fields another manager set stay.
            match current.clone() {
                None => (applied, StatusCode::CREATED),
                Some(mut obj) if kind.is_crd() => {
                    merge_patch(&mut obj, &applied);
                    (obj, StatusCode::OK)
                }
                Some(mut obj) => {
                    strategic_merge_patch(&mut obj, &applied).map_err(patch_error)?;
                    (obj, StatusCode::OK)
                }
            }
        }
        _ => return Err(unsupported_media_type(&content_type, kind)),
    };
    check_type(&mut obj, kind)?;
    check_namespace(&mut obj, target)?;
    check_name(&obj, name)?;
    if let Some(current) = &current {
        check_preconditions(kind, name, &obj, current)?;
    }
    save(&mut store, params, kind, obj, code)
}

fn delete(
    shared: &Shared,
    request: &Request<'_>,
    params: &Params,
    target: Target<'_>,
    name: &str,
) -> Result<Response, ApiError> {
    // The body, if any, is a DeleteOptions: its dryRun and preconditions count.
    let options = if request.body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { decode_json(request)? };
    let dry_run = params.dry_run
        || options["dryRun"].as_array().is_some_and(|modes| modes.iter().any(|m| m.as_str() == Some("All")));
    let mut store = lock(&shared.store);
    let key = target.key(name);
    let current = store.get(&key).ok_or_else(|| ApiError::not_found(target.kind, name))?;
    for (field, precondition) in [("resourceVersion", "ResourceVersion"), ("uid", "UID")] {
        let want = &options["preconditions"][field];
        let have = &current["metadata"][field];
        if !want.is_null() && want != have {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {precondition} in \
                     precondition: {}, {precondition} in object meta: {}",
                    target.kind.resource(),
                    want.as_str().unwrap_or_default(),
                    have.as_str().unwrap_or_default()
                ),
            )
            .with_details(ApiError::object_details(target.kind, name)));
        }
    }
    let answer = if dry_run {
        current.clone()
    } else {
        let last = store.last_state(&key);
        store.delete(&key);
        last.unwrap_or_default()
    };
    Ok(json_response(StatusCode::OK, &answer))
}

/// Checks the object as [`FakeApiServer::put`](crate::FakeApiServer::put) does, then stores it (unless
/// `dryRun=All`) and answers with it and `code`.
fn save(store: &mut Store, params: &Params, kind: Kind, obj: Value, code: StatusCode) -> Result<Response, ApiError> {
    let (key, obj) = store.admit(obj).map_err(|e| put_error(e, kind))?;
    let obj = store.prepare(&key, obj, &now_rfc3339());
    Ok(json_response(code, &commit(store, params, key, obj)))
}

/// Stores a [`prepare`](Store::prepare)d object, or with `dryRun=All` does not: then, as on a real apiserver,
/// whose dry runs write nothing to etcd, the answer keeps the stored object's `resourceVersion`, or has none for
/// a create.
fn commit(store: &mut Store, params: &Params, key: ObjectKey, mut obj: Value) -> Value {
    if !params.dry_run {
        store.commit(key, obj.clone());
        return obj;
    }
    let stored = store.get(&key).and_then(|o| o["metadata"].get("resourceVersion")).cloned();
    if let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        match stored {
            Some(revision) => metadata.insert("resourceVersion".to_owned(), revision),
            None => metadata.remove("resourceVersion"),
        };
    }
    obj
}

/// The body of a create or a replace: JSON, or YAML when its media type says so.
fn decode_object(request: &Request<'_>) -> Result<Value, ApiError> {
    let content_type = request.content_type();
    let obj = match content_type.as_str() {
        "" | "application/json" | "*/*" => decode_json(request)?,
        "application/yaml" => decode_yaml(request)?,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: \
                     application/json, application/yaml (not {content_type})"
                ),
            ))
        }
    };
    if obj.is_object() {
        Ok(obj)
    } else {
        Err(ApiError::bad_request("the object provided is not a JSON object".to_owned()))
    }
}

fn decode_json(request: &Request<'_>) -> Result<Value, ApiError> {
    serde_json::from_slice(request.body)
        .map_err(|e| ApiError::bad_request(format!("the body of the request is not valid JSON: {e}")))
}

fn decode_yaml(request: &Request<'_>) -> Result<Value, ApiError> {
    serde_yaml_ng::from_slice(request.body)
        .map_err(|e| ApiError::bad_request(format!("the body of the request is not valid YAML: {e}")))
}

/// Fills in `apiVersion` and `kind` from the path when the body leaves them out (as a real apiserver decodes with
/// the path's kind as the default), and refuses a body of another kind.
fn check_type(obj: &mut Value, kind: Kind) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request("the object provided is not a JSON object".to_owned()));
    };
    let api_version = map.entry("apiVersion").or_insert_with(|| Value::from(kind.api_version())).clone();
    let name = map.entry("kind").or_insert_with(|| Value::from(kind.name())).clone();
    if api_version != kind.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            api_version.as_str().unwrap_or_default(),
            kind.api_version()
        )));
    }
    if name != kind.name() {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({}) does not match the expected kind ({}) of {}",
            name.as_str().unwrap_or_default(),
            kind.name(),
            kind.resource()
        )));
    }
    Ok(())
}

/// Gives a namespaced object the namespace of the path when it has none, and refuses another one.
fn check_namespace(obj: &mut Value, target: Target<'_>) -> Result<(), ApiError> {
    let (true, Some(namespace)) = (target.kind.is_namespaced(), target.namespace) else {
        return Ok(());
    };
    let metadata = metadata(obj)?;
    match metadata.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            metadata.insert("namespace".to_owned(), Value::from(namespace));
            Ok(())
        }
        Some(found) if found == namespace => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request".to_owned(),
        )),
    }
}

fn metadata(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let slot = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the object provided is not a JSON object".to_owned()))?
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    slot.as_object_mut().ok_or_else(|| ApiError::bad_request("`metadata` is not a JSON object".to_owned()))
}

fn check_name(obj: &Value, name: &str) -> Result<(), ApiError> {
    let found = obj["metadata"]["name"].as_str().unwrap_or_default();
    if found == name {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "the name of the object ({found}) does not match the name on the URL ({name})"
        )))
    }
}

/// A `metadata.resourceVersion` or `metadata.uid` in the new state is a precondition: it must be the stored one's.
fn check_preconditions(kind: Kind, name: &str, obj: &Value, current: &Value) -> Result<(), ApiError> {
    let conflict = |why: String| {
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": {why}", kind.resource()),
        )
        .with_details(ApiError::object_details(kind, name))
    };
    let given = |field: &str| obj["metadata"][field].as_str().filter(|v| !v.is_empty());
    let stored = |field: &str| current["metadata"][field].as_str().unwrap_or_default().to_owned();
    if let Some(rv) = given("resourceVersion") {
        if rv != stored("resourceVersion") {
            return Err(conflict(
                "the object has been modified; please apply your changes to the latest version and try again"
                    .to_owned(),
            ));
        }
    }
    if let Some(uid) = given("uid") {
        if uid != stored("uid") {
            return Err(conflict(format!(
                "Precondition failed: UID in precondition: {}, UID in object meta: {uid}",
                stored("uid")
            )));
        }
    }
    Ok(())
}

/// `metadata.generateName` when there is no name: the prefix and five characters, from the revision so that
/// they differ from one create to the next, as the apiserver's random ones do.
fn generate_name(obj: &mut Value, revision: u64) {
    let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let named = metadata.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let Some(prefix) = metadata.get("generateName").and_then(Value::as_str).filter(|p| !named && !p.is_empty()) else {
        return;
    };
    // The apiserver's alphabet: no vowels, no confusable characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base = ALPHABET.len() as u64;
    let suffix: String = (0..5u32)
        .map(|i| char::from(ALPHABET.get((revision / base.pow(i) % base) as usize).copied().unwrap_or(b'x')))
        .collect();
    let name = format!("{prefix}{suffix}");
    metadata.insert("name".to_owned(), Value::from(name));
}

fn put_error(error: PutError, kind: Kind) -> ApiError {
    match error {
        PutError::MissingName => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", kind.name()),
        )
        .with_details(json!({
            "kind": kind.name(),
            "group": kind.group(),
            "causes": [{
                "reason": "FieldValueRequired",
                "message": "Required value: name or generateName is required",
                "field": "metadata.name",
            }],
        })),
        PutError::NotInstalled(_) => ApiError::no_such_path(),
        other => ApiError::bad_request(other.to_string()),
    }
}

fn patch_error(error: PatchError) -> ApiError {
    match error {
        PatchError::Malformed(message) => ApiError::bad_request(message),
        PatchError::Unprocessable(message) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message),
    }
}

fn unsupported_media_type(content_type: &str, kind: Kind) -> ApiError {
    let accepted = if kind.is_crd() {
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    } else {
        "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, \
         application/apply-patch+yaml"
    };
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
    )
    .with_details(json!({ "causes": [{ "message": format!("unsupported patch type {content_type:?}") }] }))
}
