//! Cluster-wide policies of the admin tiers (ClusterNetworkPolicy `policy.networking.k8s.io/v1alpha2`) for a
//! synthetic cluster: what a platform team layers over the tenants' NetworkPolicies.
//!
//! Admin tier, priorities 1..=1000 in order of generation (every tenth shares the priority of the one before, so
//! ties occur), in rotation:
//! * `guard-team-N`: subject the namespaces of one team; ingress `Pass` from the team's own namespaces, `Deny`
//!   from namespaces labelled `tier-policy: strict` of other teams on `postgres` 5432/TCP;
//! * `allow-scrape-N`: subject one team's pods labelled `tier: backend`; ingress `Accept` from the `monitoring`
//!   namespace on `metrics` (named port) and 9100/TCP;
//! * `block-metadata-N`: subject one team's namespaces; egress `Deny` to the networks 169.254.169.254/32 and
//!   fd00:ec2::254/128;
//! * `dns-first-N`: subject one env (`prod`, `staging`, `dev` in turn) of every team; egress `Accept` to the
//!   CoreDNS pods on 53/UDP and 53/TCP, then `Pass` to the same env's namespaces;
//! * `deny-cross-env-N`: subject one team's `dev` namespace; egress `Deny` to namespaces labelled `env: prod` on
//!   a port range 30000–32767/TCP, `Accept` to its own team on 8080/TCP.
//!
//! Baseline tier, priorities 1..: `baseline-env-N`: subject one env's namespaces; ingress `Deny` from every
//! other env's namespaces, `Accept` from the `monitoring` namespace; egress `Deny` to 0.0.0.0/0 except the
//! cluster's own 10.0.0.0/8 (as two networks).

use std::fmt::{self, Write};

const ENVS: [&str; 3] = ["prod", "staging", "dev"];

fn head(o: &mut String, name: &str, tier: &str, priority: usize) -> fmt::Result {
    write!(
        o,
        "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n  tier: {tier}\n  priority: {priority}\n"
    )
}

fn ns_subject(o: &mut String, key: &str, value: &str) -> fmt::Result {
    writeln!(o, "  subject:\n    namespaces:\n      matchLabels:\n        {key}: {value}")
}

/// `count` Admin-tier and `baseline` Baseline-tier ClusterNetworkPolicies for a cluster of `teams` teams (team
/// names `team-NNNN`, as the tenants of [`crate::generate_yaml`]).
pub fn generate_admin_yaml(teams: usize, count: usize, baseline: usize) -> String {
    let mut o = String::with_capacity((count + baseline) * 700);
    // Writing into a String cannot fail.
    let _ = write_admin(&mut o, teams.max(1), count, baseline);
    o
}

fn write_admin(o: &mut String, teams: usize, count: usize, baseline: usize) -> fmt::Result {
    let mut priority = 0;
    for i in 0..count {
        if i % 10 != 9 {
            priority += 1;
        }
        let team = format!("team-{:04}", (i * 7) % teams);
        match i % 5 {
            0 => {
                head(o, &format!("guard-{team}-{i}"), "Admin", priority)?;
                ns_subject(o, "team", &team)?;
                writeln!(
                    o,
                    "  ingress:\n  - name: same-team\n    action: Pass\n    from:\n    - namespaces:\n        matchLabels:\n          team: {team}\n  - name: no-db-from-strict\n    action: Deny\n    from:\n    - namespaces:\n        matchLabels:\n          tier-policy: strict\n    protocols:\n    - tcp:\n        destinationPort:\n          number: 5432"
                )?;
            }
            1 => {
                head(o, &format!("allow-scrape-{team}-{i}"), "Admin", priority)?;
                writeln!(
                    o,
                    "  subject:\n    pods:\n      namespaceSelector:\n        matchLabels:\n          team: {team}\n      podSelector:\n        matchLabels:\n          tier: backend"
                )?;
                writeln!(
                    o,
                    "  ingress:\n  - name: prometheus\n    action: Accept\n    from:\n    - namespaces:\n        matchLabels:\n          kubernetes.io/metadata.name: monitoring\n    protocols:\n    - destinationNamedPort: metrics\n    - tcp:\n        destinationPort:\n          number: 9100"
                )?;
            }
            2 => {
                head(o, &format!("block-metadata-{team}-{i}"), "Admin", priority)?;
                ns_subject(o, "team", &team)?;
                writeln!(
                    o,
                    "  egress:\n  - name: instance-metadata\n    action: Deny\n    to:\n    - networks:\n      - 169.254.169.254/32\n      - fd00:ec2::254/128"
                )?;
            }
            3 => {
                let env = ENVS[(i / 5) % 3];
                head(o, &format!("dns-first-{env}-{i}"), "Admin", priority)?;
                ns_subject(o, "env", env)?;
                writeln!(
                    o,
                    "  egress:\n  - name: cluster-dns\n    action: Accept\n    to:\n    - pods:\n        namespaceSelector:\n          matchLabels:\n            kubernetes.io/metadata.name: kube-system\n        podSelector:\n          matchLabels:\n            k8s-app: kube-dns\n    protocols:\n    - udp:\n        destinationPort:\n          number: 53\n    - tcp:\n        destinationPort:\n          number: 53\n  - name: same-env\n    action: Pass\n    to:\n    - namespaces:\n        matchLabels:\n          env: {env}"
                )?;
            }
            _ => {
                head(o, &format!("deny-cross-env-{team}-{i}"), "Admin", priority)?;
                writeln!(o, "  subject:\n    namespaces:\n      matchLabels:\n        team: {team}\n        env: dev")?;
                writeln!(
                    o,
                    "  egress:\n  - name: no-nodeports-in-prod\n    action: Deny\n    to:\n    - namespaces:\n        matchLabels:\n          env: prod\n    protocols:\n    - tcp:\n        destinationPort:\n          range:\n            start: 30000\n            end: 32767\n  - name: own-team-http\n    action: Accept\n    to:\n    - namespaces:\n        matchLabels:\n          team: {team}\n    protocols:\n    - tcp:\n        destinationPort:\n          number: 8080"
                )?;
            }
        }
    }
    for i in 0..baseline {
        let env = ENVS[i % 3];
        head(o, &format!("baseline-{env}-{i}"), "Baseline", i + 1)?;
        ns_subject(o, "env", env)?;
        writeln!(
            o,
            "  ingress:\n  - name: monitoring\n    action: Accept\n    from:\n    - namespaces:\n        matchLabels:\n          kubernetes.io/metadata.name: monitoring\n  - name: other-envs\n    action: Deny\n    from:\n    - namespaces:\n        matchExpressions:\n        - key: env\n          operator: NotIn\n          values: [{env}]\n  egress:\n  - name: internet\n    action: Deny\n    to:\n    - networks:\n      - 0.0.0.0/5\n      - 11.0.0.0/8\n      - 12.0.0.0/6\n      - 16.0.0.0/4\n      - 32.0.0.0/3\n      - 64.0.0.0/2\n      - 128.0.0.0/1"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_tiers() {
        let y = generate_admin_yaml(10, 23, 4);
        assert_eq!(y.matches("kind: ClusterNetworkPolicy").count(), 27);
        assert_eq!(y.matches("tier: Admin").count(), 23);
        assert_eq!(y.matches("tier: Baseline").count(), 4);
        // Every tenth admin policy shares the priority of the one before it.
        assert!(y.contains("priority: 9\n") && !y.contains("priority: 23\n"));
        assert_eq!(generate_admin_yaml(10, 23, 4), y, "deterministic");
    }
}
