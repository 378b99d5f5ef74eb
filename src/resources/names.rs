//! The names Kubernetes gives objects and namespaces, as the API server checks them:
//! shared by `folio api` (before it creates an object), the REST API (before a name
//! becomes part of a path) and the manifest reader (before `folio run` or `folio
//! serve -f` takes a name the cluster would refuse).

/// Longest object name (a DNS-1123 subdomain).
pub const MAX_NAME_LENGTH: usize = 253;
/// Longest DNS label, label value and name part of a label or annotation key.
pub const MAX_LABEL_LENGTH: usize = 63;

/// The rule of [`is_object_name`], in words for error messages.
pub const OBJECT_NAME_RULE: &str = "a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit";
/// The rule of [`is_dns_label`], in words for error messages.
pub const DNS_LABEL_RULE: &str =
    "a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit";

/// Whether `name` can name an object: a DNS-1123 subdomain of at most 253 characters.
/// A name that cannot is not looked up at all (it would not be found, and it must not
/// become part of a request path).
pub fn is_object_name(name: &str) -> bool {
    // As Kubernetes has it: the parts between dots are not limited to 63 characters.
    name.len() <= MAX_NAME_LENGTH && name.split('.').all(|part| is_dns_label_of(part, MAX_NAME_LENGTH))
}

/// A DNS-1123 label (a namespace's name): at most 63 lowercase letters, digits and
/// '-', starting and ending with a letter or digit.
pub fn is_dns_label(label: &str) -> bool {
    is_dns_label_of(label, MAX_LABEL_LENGTH)
}

fn is_dns_label_of(label: &str, max: usize) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_dns_subdomains_of_at_most_253_characters() {
        for good in ["invoice", "invoice-2026.v2", "0197a1b2-0000-7000-8000-000000000001", &"a".repeat(253)] {
            assert!(is_object_name(good), "{good}");
        }
        for bad in ["", "Invoice", "in_voice", "-a", "a-", "a..b", ".a", "a/b", "..", &"a".repeat(254)] {
            assert!(!is_object_name(bad), "{bad}");
        }
    }

    #[test]
    fn namespaces_are_dns_labels_of_at_most_63_characters() {
        for good in ["acme", "a-1", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in ["", "Acme", "a.b", "a_b", "-a", "a-", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
