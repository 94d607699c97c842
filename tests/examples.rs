//! Every configuration in `examples/` loads and validates.

use std::path::Path;

use mcpgate::config::Config;

#[test]
fn every_example_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable example");
        // Examples reference deployment-specific variables; plausible values make them loadable.
        let env = |name: &str| {
            Some(if name.ends_with("_PORT") {
                "3001".to_string()
            } else {
                format!("{name}-value")
            })
        };
        let loaded = match Config::from_yaml(&text, &path, &dir, &env) {
            Ok(config) => config,
            Err(e) => panic!("{} is invalid: {e}", path.display()),
        };
        if loaded.policies.is_some() {
            // The policy set it names compiles against its upstreams.
            if let Err(e) = mcpgate::cli::policy::load(&loaded) {
                panic!("{}: {e}", path.display());
            }
        }
        checked += 1;
    }
    assert!(checked >= 3, "expected example configs, found {checked}");
}
