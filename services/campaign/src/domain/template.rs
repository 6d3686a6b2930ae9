//! Message templates (minijinja): a subject rendered as text and a body rendered with HTML
//! escaping. Every variable a template uses must be a personalisation field, checked when the
//! campaign is saved, so a send never meets a missing variable.

use std::sync::Arc;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use titan_kit::input::InputError;

/// The variables a template may use.
pub const FIELDS: [&str; 7] = [
    "first_name",
    "email",
    "level",
    "country",
    "campaign_name",
    "unsubscribe_url",
    "click_url",
];

/// Longest subject and body sources, in characters.
const MAX_SUBJECT: usize = 200;
const MAX_BODY: usize = 100_000;

/// What a template is rendered with for one user.
#[derive(Debug, Clone, Serialize)]
pub struct Personal<'a> {
    pub first_name: &'a str,
    pub email: &'a str,
    pub level: u32,
    pub country: &'a str,
    pub campaign_name: &'a str,
    pub unsubscribe_url: &'a str,
    pub click_url: &'a str,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

/// A checked template with its compiled environment (shared by clones).
#[derive(Clone)]
pub struct Template {
    subject: String,
    body: String,
    click_url: String,
    env: Arc<Environment<'static>>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("subject", &self.subject)
            .field("body_chars", &self.body.chars().count())
            .field("click_url", &self.click_url)
            .finish_non_exhaustive()
    }
}

impl Template {
    /// Compiles both parts and checks their variables and the click target.
    pub fn new(subject: &str, body: &str, click_url: &str) -> Result<Self, InputError> {
        if subject.chars().count() > MAX_SUBJECT {
            return Err(InputError::new(
                "content.subject",
                format!("has more than {MAX_SUBJECT} characters"),
            ));
        }
        let chars = body.chars().count();
        if chars == 0 || chars > MAX_BODY {
            return Err(InputError::new(
                "content.body",
                format!("must have 1-{MAX_BODY} characters"),
            ));
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // The body is HTML wherever it ends up; the subject is a header line, never HTML.
        env.set_auto_escape_callback(|name| {
            if name == "body" {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        for (name, field, source) in [
            ("subject", "content.subject", subject),
            ("body", "content.body", body),
        ] {
            env.add_template_owned(name.to_owned(), source.to_owned())
                .map_err(|e| {
                    InputError::new(
                        field,
                        format!("does not compile: {}", e.detail().unwrap_or("syntax error")),
                    )
                })?;
            let tmpl = env
                .get_template(name)
                .map_err(|e| InputError::new(field, e.to_string()))?;
            let mut used: Vec<String> = tmpl.undeclared_variables(false).into_iter().collect();
            used.sort();
            if let Some(unknown) = used.iter().find(|v| !FIELDS.contains(&v.as_str())) {
                return Err(InputError::new(
                    field,
                    format!(
                        "uses {unknown:?}, which is not a personalisation field ({})",
                        FIELDS.join(", ")
                    ),
                ));
            }
            if used.iter().any(|v| v == "click_url") && click_url.is_empty() {
                return Err(InputError::new(
                    "content.click_url",
                    format!("is required: the {name} uses click_url"),
                ));
            }
        }
        if !click_url.is_empty()
            && (!(click_url.starts_with("https://") || click_url.starts_with("http://"))
                || click_url.len() > 2048
                || click_url.chars().any(char::is_whitespace))
        {
            return Err(InputError::new(
                "content.click_url",
                "must be an http(s) URL of at most 2048 characters without spaces",
            ));
        }
        Ok(Self {
            subject: subject.to_owned(),
            body: body.to_owned(),
            click_url: click_url.to_owned(),
            env: Arc::new(env),
        })
    }

    pub fn subject_source(&self) -> &str {
        &self.subject
    }

    pub fn body_source(&self) -> &str {
        &self.body
    }

    pub fn click_url(&self) -> &str {
        &self.click_url
    }

    /// Renders both parts for one user. Only a broken engine fails here: the variables were
    /// checked when the template was built.
    pub fn render(&self, with: &Personal<'_>) -> Result<Rendered, minijinja::Error> {
        let subject = self.env.get_template("subject")?.render(with)?;
        let body = self.env.get_template("body")?.render(with)?;
        Ok(Rendered { subject, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person<'a>(first_name: &'a str) -> Personal<'a> {
        Personal {
            first_name,
            email: "a@example.com",
            level: 3,
            country: "FR",
            campaign_name: "Winter",
            unsubscribe_url: "https://x/u/t",
            click_url: "https://x/c/t",
        }
    }

    #[test]
    fn the_body_is_html_escaped_and_the_subject_is_not() {
        let t = Template::new(
            "Hi {{ first_name }} & co",
            "<p>Hello {{ first_name }}, level {{ level }}</p><a href=\"{{ unsubscribe_url }}\">stop</a>",
            "",
        )
        .expect("valid");
        let r = t.render(&person("<b>Ann</b>")).expect("renders");
        assert_eq!(r.subject, "Hi <b>Ann</b> & co");
        assert_eq!(
            r.body,
            "<p>Hello &lt;b&gt;Ann&lt;&#x2f;b&gt;, level 3</p><a href=\"https:&#x2f;&#x2f;x&#x2f;u&#x2f;t\">stop</a>"
        );
    }

    #[test]
    fn an_unknown_variable_is_refused_at_save() {
        let e = Template::new("Hi", "Hello {{ nickname }}", "").expect_err("refused");
        assert_eq!(e.field, "content.body");
        assert!(e.message.starts_with("uses \"nickname\""), "{}", e.message);
        let e = Template::new("{{ coupon }}", "x", "").expect_err("refused");
        assert_eq!(e.field, "content.subject");
    }

    #[test]
    fn a_syntax_error_and_a_missing_click_url_are_refused() {
        let e = Template::new("Hi", "{% if %}", "").expect_err("refused");
        assert_eq!(e.field, "content.body");
        let e = Template::new("Hi", "{{ click_url }}", "").expect_err("refused");
        assert_eq!(e.field, "content.click_url");
        let e = Template::new("Hi", "x", "javascript:alert(1)").expect_err("refused");
        assert_eq!(e.field, "content.click_url");
        assert!(Template::new("Hi", "", "").is_err());
    }
}
