//! How kiln reads Redfish leniently: deserializers that read a field of the wrong JSON type as absent, string
//! enums that keep unknown values as `Other(…)`, and object keys matched case-insensitively against the
//! property names kiln knows. [`parse_resource`] applies all of it; the resource models are in
//! [`super::model`].

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::Value;

/// Deserializes any JSON value into `Option<T>`, reading a value of the wrong shape as `None`.
pub(crate) fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// Deserializes a JSON array into `Vec<T>`, dropping elements of the wrong shape; anything else reads as empty.
pub(crate) fn lenient_vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    Ok(match value {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| serde_json::from_value(item).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// Declares a Redfish string enum that keeps unknown values as `Other(String)` and matches known ones
/// case-insensitively.
macro_rules! lenient_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A value this version of kiln does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// The Redfish spelling of this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Other(text) => text,
                }
            }

            /// Reads a Redfish string; unknown values become `Other`.
            pub fn parse(text: &str) -> Self {
                $(if text.eq_ignore_ascii_case($text) { return $name::$variant; })*
                $name::Other(text.to_string())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Ok($name::parse(&text))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

pub(crate) use lenient_enum;

/// Every property name kiln reads; keys in a BMC's answer that match one of these case-insensitively are
/// rewritten to the canonical spelling before deserializing.
const KNOWN_KEYS: &[&str] = &[
    "@odata.id",
    "@odata.etag",
    "Systems",
    "Managers",
    "SessionService",
    "Links",
    "Sessions",
    "Vendor",
    "ProtocolFeaturesSupported",
    "ExpandQuery",
    "ExpandAll",
    "NoLinks",
    "Members",
    "target",
    "ResetType@Redfish.AllowableValues",
    "#ComputerSystem.Reset",
    "BootSourceOverrideEnabled",
    "BootSourceOverrideTarget",
    "BootSourceOverrideTarget@Redfish.AllowableValues",
    "BootSourceOverrideMode",
    "Id",
    "Manufacturer",
    "Model",
    "SerialNumber",
    "BiosVersion",
    "PowerState",
    "Boot",
    "Actions",
    "EthernetInterfaces",
    "VirtualMedia",
    "LogServices",
    "FirmwareVersion",
    "MACAddress",
    "PermanentMACAddress",
    "#VirtualMedia.InsertMedia",
    "#VirtualMedia.EjectMedia",
    "Image",
    "Inserted",
    "MediaTypes",
    "Entries",
    "#LogService.ClearLog",
    "Created",
    "Severity",
    "Message",
    "TaskState",
    "error",
    "message",
    "@Message.ExtendedInfo",
    "MessageId",
];

/// Rewrites object keys that match a known property name case-insensitively to its canonical spelling. Keys
/// that already match exactly win over case variants.
fn canonicalize_keys(value: &mut Value, depth: usize) {
    // Nesting deeper than any Redfish resource kiln reads is left alone rather than recursed into.
    if depth > 32 {
        return;
    }
    match value {
        Value::Object(map) => {
            let renames: Vec<(String, &'static str)> = map
                .keys()
                .filter(|key| !KNOWN_KEYS.contains(&key.as_str()))
                .filter_map(|key| {
                    KNOWN_KEYS
                        .iter()
                        .find(|known| *known != key && known.eq_ignore_ascii_case(key))
                        .map(|known| (key.clone(), *known))
                })
                .collect();
            for (from, to) in renames {
                if !map.contains_key(to)
                    && let Some(moved) = map.remove(&from)
                {
                    map.insert(to.to_string(), moved);
                }
            }
            for child in map.values_mut() {
                canonicalize_keys(child, depth + 1);
            }
        }
        Value::Array(items) => {
            for item in items {
                canonicalize_keys(item, depth + 1);
            }
        }
        _ => {}
    }
}

/// Why a body could not be read as a Redfish resource.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Not JSON at all.
    #[error("body is not JSON")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not an object.
    #[error("body is JSON but not an object")]
    NotAnObject,
}

/// Parses a BMC's answer into a resource model: the body must be a JSON object; everything inside is read
/// leniently (see the module docs).
pub fn parse_resource<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ModelError> {
    let mut value: Value = serde_json::from_slice(body).map_err(ModelError::NotJson)?;
    if !value.is_object() {
        return Err(ModelError::NotAnObject);
    }
    canonicalize_keys(&mut value, 0);
    // Every field is lenient, so this can only fail on a shape serde itself rejects; read that as empty.
    Ok(serde_json::from_value(value).unwrap_or_default())
}
