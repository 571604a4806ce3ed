//! The one table mapping `kiln.toml` keys to the clap argument ids they stand for. Adding a setting to the file
//! is one row here plus its field in [`super::file::FileConfig`].

/// How a key's value becomes command-line tokens (and JSON in `kiln config check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string value (addresses and paths included).
    Str,
    /// An integer.
    Int,
    /// A floating-point number.
    Float,
    /// `true` sets the flag (clap `SetTrue`).
    Flag,
    /// `false` sets the flag (the file says `ipv6_ra = false` for `--no-ipv6-ra`).
    InvertedFlag,
    /// A list of strings, one flag per item (repeatable flags).
    List,
}

/// One file key and the clap argument it sets.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Table name in the file (`database`, `api`, `engine`, `boot`).
    pub section: &'static str,
    /// Key inside the table.
    pub name: &'static str,
    /// The clap argument id (the struct field's name).
    pub arg: &'static str,
    /// The value's shape.
    pub kind: Kind,
    /// Whether the argument is global (accepted by every subcommand).
    pub global: bool,
}

const fn key(section: &'static str, name: &'static str, arg: &'static str, kind: Kind) -> Key {
    Key {
        section,
        name,
        arg,
        kind,
        global: false,
    }
}

const fn global(section: &'static str, name: &'static str, arg: &'static str, kind: Kind) -> Key {
    Key {
        section,
        name,
        arg,
        kind,
        global: true,
    }
}

/// Every key of `kiln.toml`, in file order.
pub const KEYS: &[Key] = &[
    global("database", "url", "db", Kind::Str),
    global("database", "key_file", "key_file", Kind::Str),
    global("database", "signing_key", "signing_key", Kind::Str),
    key("api", "listen", "listen", Kind::Str),
    key("api", "tls_cert", "tls_cert", Kind::Str),
    key("api", "tls_key", "tls_key", Kind::Str),
    key("api", "tls_listen", "tls_listen", Kind::Str),
    global("api", "tls_ca", "tls_ca", Kind::Str),
    key("engine", "enabled", "no_engine", Kind::InvertedFlag),
    key("engine", "instance", "instance", Kind::Str),
    key("engine", "workers", "workers", Kind::Int),
    key("engine", "image", "engine_image", Kind::Str),
    key("engine", "policy", "policy", Kind::Str),
    key("engine", "time_scale", "time_scale", Kind::Float),
    key("engine", "ssh_user", "ssh_user", Kind::Str),
    key("engine", "ssh_key", "ssh_key", Kind::Str),
    key("engine", "image_dir", "image_dir", Kind::Str),
    key("boot", "server_ip", "server_ip", Kind::Str),
    key("boot", "url", "public_url", Kind::Str),
    key("boot", "assets", "assets", Kind::Str),
    key("boot", "image", "image", Kind::Str),
    key("boot", "kernel_args", "kernel_args", Kind::Str),
    key("boot", "dhcp_pool", "pool", Kind::Str),
    key("boot", "dhcp_proxy", "proxy", Kind::Flag),
    key("boot", "dhcp_interface", "interface", Kind::Str),
    key("boot", "dhcp_listen", "dhcp_listen", Kind::Str),
    key("boot", "dhcp_proxy_listen", "proxy_listen", Kind::Str),
    key("boot", "dhcp_prefix_len", "prefix_len", Kind::Int),
    key("boot", "dhcp_router", "router", Kind::Str),
    key("boot", "dhcp_reserve", "reservations", Kind::List),
    key("boot", "dhcp_lease_secs", "lease_secs", Kind::Int),
    key("boot", "tftp_root", "tftp_root", Kind::Str),
    key("boot", "tftp_listen", "tftp_listen", Kind::Str),
    key("boot", "ipv6_ra", "no_ipv6_ra", Kind::InvertedFlag),
];
