//! The README is the manual: its configuration table names every setting.

use tenancy_runtime::config::{Config, ServiceName};

const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));

/// Every setting's dotted key (`gateway.public_burst`), from the defaults.
fn keys(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, value) in fields {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                keys(&key, value, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn the_readme_configuration_table_lists_every_setting() {
    let mut all = Vec::new();
    keys(
        "",
        &serde_json::to_value(Config::default()).unwrap(),
        &mut all,
    );
    assert!(all.len() > 30, "{all:?}");
    let services: Vec<&str> = ServiceName::ALL.iter().map(|s| s.as_str()).collect();
    let missing: Vec<&String> = all
        .iter()
        .filter(|key| {
            let documented = README.contains(&format!("`{key}`"));
            // Per-service keys are documented once, as `<service>.field`.
            let per_service = key.split_once('.').is_some_and(|(section, field)| {
                services.contains(&section) && README.contains(&format!("`<service>.{field}`"))
            });
            !documented && !per_service
        })
        .collect();
    assert!(
        missing.is_empty(),
        "README's configuration table lacks {missing:?}"
    );
}
