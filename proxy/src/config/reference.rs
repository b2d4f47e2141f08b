//! The README's configuration reference, checked against the config structs: every key the
//! loader accepts has a row in the table, and every row names a key it accepts.

#[cfg(test)]
mod tests {
    use super::super::RawConfig;

    const MIN: &str = "[upstream]\nurl = \"postgres://u@h/app\"\n";

    /// The keys a section accepts, read from serde's unknown-field error (`expected one of
    /// `a`, `b` …`), so the list is the struct's own.
    fn accepted(toml: &str) -> Vec<String> {
        let err = toml::from_str::<RawConfig>(toml)
            .expect_err("an unknown key is refused")
            .to_string();
        let list = err
            .split_once("expected")
            .unwrap_or_else(|| panic!("no field list in: {err}"))
            .1;
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    /// Every key, as the README writes it: `key` at top level, `section.key` in a section.
    fn struct_keys() -> Vec<String> {
        let bogus = "zz_unknown = 1\n";
        let mut keys: Vec<String> = accepted(&format!("{bogus}{MIN}"))
            .into_iter()
            // Sections are documented by their keys.
            .filter(|k| {
                !matches!(
                    k.as_str(),
                    "upstream"
                        | "tls"
                        | "tenancy"
                        | "jwt"
                        | "users"
                        | "balances"
                        | "plugins"
                        | "admin"
                )
            })
            .collect();
        let sections: [(&str, String); 9] = [
            ("admin", format!("{MIN}[admin]\n{bogus}")),
            ("upstream", format!("{MIN}{bogus}")),
            ("tls", format!("{MIN}[tls]\n{bogus}")),
            ("tenancy", format!("{MIN}[tenancy]\n{bogus}")),
            ("jwt", format!("{MIN}[jwt]\n{bogus}")),
            ("jwt.keys", format!("{MIN}[[jwt.keys]]\n{bogus}")),
            ("users", format!("{MIN}[[users]]\n{bogus}")),
            ("balances", format!("{MIN}[balances]\n{bogus}")),
            ("plugins", format!("{MIN}[[plugins]]\n{bogus}")),
        ];
        for (section, toml) in sections {
            keys.extend(
                accepted(&toml)
                    .into_iter()
                    .filter(|k| !(section == "jwt" && k == "keys"))
                    .map(|k| format!("{section}.{k}")),
            );
        }
        keys.sort();
        keys
    }

    /// The first column of the README's "Configuration reference" table.
    fn readme_keys() -> Vec<String> {
        let readme = include_str!("../../../README.md");
        let table = readme
            .split_once("## Configuration reference")
            .expect("README has a Configuration reference")
            .1;
        let mut keys: Vec<String> = table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.split('|').nth(1))
            .filter_map(|cell| cell.trim().strip_prefix('`')?.split('`').next())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn readme_documents_every_config_key_and_no_other() {
        let code = struct_keys();
        let readme = readme_keys();
        let missing: Vec<_> = code.iter().filter(|k| !readme.contains(k)).collect();
        let unknown: Vec<_> = readme.iter().filter(|k| !code.contains(k)).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "README's configuration reference: missing {missing:?}, not a key {unknown:?}"
        );
    }
}
