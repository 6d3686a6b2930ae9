//! A/B variants of a campaign's content: an abtesting experiment and one template per
//! variant key. Each recipient's variant is the experiment's assignment (abtesting `Assign`),
//! so the experiment's exposures, and through them its results, hold the campaign's
//! recipients; a variant without content of its own (the control, say) gets the campaign's
//! content.

use titan_kit::input::InputError;

use super::{campaign::cut, template::Template};

/// Most variants with content of their own.
pub const MAX_VARIANTS: usize = 10;
/// Longest experiment and variant keys, in characters.
const MAX_KEY: usize = 128;

/// One variant's content.
#[derive(Debug, Clone)]
pub struct Variant {
    pub key: String,
    pub template: Template,
}

/// The experiment that assigns variants, and the content of each.
#[derive(Debug, Clone)]
pub struct Variants {
    pub experiment_key: String,
    pub contents: Vec<Variant>,
}

fn check_key(field: &str, key: &str) -> Result<(), InputError> {
    let n = key.chars().count();
    if n == 0 || n > MAX_KEY || key.chars().any(|c| !c.is_ascii_graphic()) {
        return Err(InputError::new(
            field,
            format!(
                "{:?} must have 1-{MAX_KEY} printable ASCII characters",
                cut(key)
            ),
        ));
    }
    Ok(())
}

impl Variants {
    pub fn new(experiment_key: &str, contents: Vec<Variant>) -> Result<Self, InputError> {
        check_key("variants.experiment_key", experiment_key)?;
        if contents.is_empty() || contents.len() > MAX_VARIANTS {
            return Err(InputError::new(
                "variants.contents",
                format!("must hold 1-{MAX_VARIANTS} variants"),
            ));
        }
        for (i, v) in contents.iter().enumerate() {
            let field = format!("variants.contents[{i}].key");
            check_key(&field, &v.key)?;
            if contents[..i].iter().any(|w| w.key == v.key) {
                return Err(InputError::new(
                    field,
                    format!("{:?} is named twice", cut(&v.key)),
                ));
            }
        }
        Ok(Self {
            experiment_key: experiment_key.to_owned(),
            contents,
        })
    }

    /// The content of variant `key`, when it has one of its own.
    pub fn template(&self, key: &str) -> Option<&Template> {
        self.contents
            .iter()
            .find(|v| v.key == key)
            .map(|v| &v.template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(key: &str, body: &str) -> Variant {
        Variant {
            key: key.into(),
            template: Template::new("Hi", body, "").expect("template"),
        }
    }

    #[test]
    fn variants_need_an_experiment_and_distinct_keys() {
        let v = Variants::new("winter", vec![variant("a", "A"), variant("b", "B")]).expect("valid");
        assert!(v.template("b").is_some());
        assert!(v.template("control").is_none());
        for (experiment, contents, field) in [
            ("", vec![variant("a", "A")], "variants.experiment_key"),
            ("winter", vec![], "variants.contents"),
            (
                "winter",
                vec![variant("a b", "A")],
                "variants.contents[0].key",
            ),
            (
                "winter",
                vec![variant("a", "A"), variant("a", "B")],
                "variants.contents[1].key",
            ),
        ] {
            assert_eq!(
                Variants::new(experiment, contents)
                    .map(drop)
                    .map_err(|e| e.field),
                Err(field.to_owned())
            );
        }
    }
}
