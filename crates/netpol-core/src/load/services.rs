//! Services (`v1`) and their endpoints: EndpointSlices (`discovery.k8s.io/v1`) and Endpoints (`v1`).
//!
//! netpol reads them for Cilium: `toServices` and the `kube-apiserver` entity are the addresses behind a Service
//! (`load/cilium_refs.rs`). What is read: a Service's name, namespace, labels and `spec.selector`; an
//! EndpointSlice's Service (its `kubernetes.io/service-name` label, as the EndpointSlice controller sets it) and
//! the addresses of its endpoints that are ready (a missing `ready` condition means ready, as the API documents
//! it) or, while terminating, still serving; an Endpoints object's Service (its own name) and the `addresses` of
//! its subsets (`notReadyAddresses` are not backends). FQDN EndpointSlices carry no address: a warning says they
//! are left out. Every other field is skipped.

use std::net::IpAddr;

use super::objects as obj;
use super::validate::{check_labels, meta_name, meta_namespace, Errors};
use super::Item;

/// The label that ties an EndpointSlice to its Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

pub(crate) fn service(o: obj::ServiceObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let ns_name = meta_namespace(&o.metadata.namespace, errs);
    let labels = check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    let selector =
        o.spec.and_then(|s| s.selector).map(|sel| check_labels(Some(sel), || "spec.selector".to_string(), errs));
    Some(Item::Service { ns_name: ns_name?, name: name?, labels, selector })
}

fn address(text: &str, path: &str, errs: &mut Errors) -> Option<IpAddr> {
    match text.parse::<IpAddr>() {
        Ok(ip) => Some(ip.to_canonical()),
        Err(_) => {
            errs.add(path.to_string(), format!("`{text}` is not an IP address"));
            None
        }
    }
}

pub(crate) fn endpoint_slice(o: obj::EndpointSliceObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let ns_name = meta_namespace(&o.metadata.namespace, errs);
    let service = o.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).cloned();
    let mut addresses = Vec::new();
    match o.address_type.as_deref() {
        Some("IPv4" | "IPv6") => {}
        Some("FQDN") => {
            errs.warn("addressType", "FQDN endpoints have no address netpol can match: left out");
            return None;
        }
        Some(other) => {
            errs.add("addressType", format!("unsupported value `{other}`: one of IPv4, IPv6, FQDN"));
        }
        None => errs.add("addressType", "required"),
    }
    for (i, ep) in o.endpoints.iter().flatten().enumerate() {
        let c = ep.conditions.as_ref();
        let ready = c.and_then(|c| c.ready) != Some(false);
        let serving_while_terminating = c.is_some_and(|c| c.serving == Some(true) && c.terminating == Some(true));
        for (j, a) in ep.addresses.iter().flatten().enumerate() {
            let ip = address(a, &format!("endpoints[{i}].addresses[{j}]"), errs);
            if let Some(ip) = ip.filter(|_| ready || serving_while_terminating) {
                addresses.push(ip);
            }
        }
    }
    let Some(service) = service else {
        errs.warn(
            format!("metadata.labels.{SERVICE_NAME_LABEL}"),
            "no Service: an EndpointSlice belongs to the Service this label names; its endpoints are left out",
        );
        return None;
    };
    Some(Item::ServiceEndpoints { kind: "EndpointSlice", ns_name: ns_name?, name: name?, service, addresses })
}

pub(crate) fn endpoints(o: obj::EndpointsObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let ns_name = meta_namespace(&o.metadata.namespace, errs);
    let mut addresses = Vec::new();
    for (i, s) in o.subsets.iter().flatten().enumerate() {
        for (j, a) in s.addresses.iter().flatten().enumerate() {
            let path = format!("subsets[{i}].addresses[{j}].ip");
            match &a.ip {
                Some(text) => addresses.extend(address(text, &path, errs)),
                None => errs.add(path, "required"),
            }
        }
    }
    let name = name?;
    Some(Item::ServiceEndpoints { kind: "Endpoints", ns_name: ns_name?, service: name.clone(), name, addresses })
}
