//! `kiln image add/list/rm`: the image catalog and its content-addressed store.

use std::path::PathBuf;

use clap::Subcommand;
use kiln_images::{ContentStore, ImageFormat, ImageLibrary, ImageMeta};
use kiln_inventory::Image;

use crate::client::Client;
use crate::global::{KeyUse, print_json};
use crate::{GlobalArgs, table};

/// Images.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of the content-addressed image store.
    #[arg(
        long,
        global = true,
        env = "KILN_IMAGE_DIR",
        default_value = "kiln-images"
    )]
    image_dir: PathBuf,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Copy an image file into the store (hashing it) and catalog it.
    #[command(disable_version_flag = true)]
    Add {
        /// The image file.
        file: PathBuf,
        /// Image name.
        #[arg(long)]
        name: String,
        /// Version within the name.
        #[arg(long)]
        version: String,
        /// Operating system it carries (free text).
        #[arg(long)]
        os: Option<String>,
        /// raw, qcow2 or raw.zst (default: detected from the file's magic number).
        #[arg(long)]
        format: Option<ImageFormat>,
        /// Detached ed25519 signature over the digest, base64.
        #[arg(long, requires = "key_id")]
        signature: Option<String>,
        /// Id of the key that made the signature.
        #[arg(long)]
        key_id: Option<String>,
        /// Verify the signature with this ed25519 public key (64 hex digits or base64) before cataloging.
        #[arg(long, requires = "signature")]
        public_key: Option<String>,
    },
    /// List cataloged images.
    List,
    /// Remove an image from the catalog and the store.
    #[command(disable_version_flag = true)]
    Rm {
        /// Image name.
        name: String,
        /// Version.
        version: String,
    },
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    if let ImageCommand::List = args.command {
        let client = Client::open(global, KeyUse::IfPresent).await?;
        let images = client.images().await;
        client.close().await;
        return list(&images?, global);
    }
    global.local_only("kiln image add/rm (it writes the local image store)")?;
    let store = global.open_store(KeyUse::IfPresent).await?;
    let library = ImageLibrary::new(store.clone(), ContentStore::new(args.image_dir));
    let result = run(args.command, &library, global).await;
    store.close().await;
    result
}

async fn run(
    command: ImageCommand,
    library: &ImageLibrary,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    match command {
        ImageCommand::Add {
            file,
            name,
            version,
            os,
            format,
            signature,
            key_id,
            public_key,
        } => {
            let verify_with = public_key
                .map(|key| kiln_images::signature::parse_public_key(&key))
                .transpose()?;
            let meta = ImageMeta {
                verify_with,
                name,
                version,
                os,
                format,
                signature,
                signing_key_id: key_id,
            };
            let image = library.add(&file, &meta).await?;
            if global.json {
                print_json(&image)?;
            } else {
                println!(
                    "added {} {} ({}, {} bytes) sha256:{}",
                    image.name, image.version, image.format, image.size_bytes, image.sha256
                );
            }
        }
        ImageCommand::List => {
            list(&library.catalog.images().await?, global)?;
        }
        ImageCommand::Rm { name, version } => {
            let removed = library.remove(&name, &version).await?;
            println!(
                "removed {} {} (sha256:{})",
                removed.name, removed.version, removed.sha256
            );
        }
    }
    Ok(())
}

/// Prints the catalog as a table or JSON.
fn list(images: &[Image], global: &GlobalArgs) -> anyhow::Result<()> {
    if global.json {
        return print_json(&images);
    }
    if images.is_empty() {
        println!("no images yet: add one with `kiln image add FILE --name N --version V`");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.version.clone(),
                i.format.to_string(),
                i.size_bytes.to_string(),
                i.os.clone().unwrap_or_default(),
                i.sha256.chars().take(16).collect(),
                i.signing_key_id.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "VERSION",
        "FORMAT",
        "BYTES",
        "OS",
        "SHA256",
        "SIGNED BY",
    ];
    println!("{}", table::render(&header, &rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    /// The subcommand under a parser shaped like `kiln`'s (which propagates `--version`).
    #[derive(Debug, Parser)]
    #[command(name = "kiln", version, propagate_version = true)]
    struct Kiln {
        #[command(flatten)]
        image: super::Args,
    }

    #[test]
    fn arguments_parse() {
        Kiln::command().debug_assert();
        let parsed = Kiln::try_parse_from([
            "kiln",
            "add",
            "disk.raw",
            "--name",
            "deb",
            "--version",
            "1",
            "--format",
            "raw.zst",
        ]);
        let Ok(Kiln { image }) = parsed else {
            panic!("add parses: {parsed:?}");
        };
        assert!(matches!(
            image.command,
            super::ImageCommand::Add { ref version, format: Some(kiln_images::ImageFormat::RawZstd), .. } if version == "1"
        ));
        assert!(
            Kiln::try_parse_from([
                "kiln",
                "add",
                "x",
                "--name",
                "n",
                "--version",
                "1",
                "--format",
                "vmdk"
            ])
            .is_err()
        );
        assert!(Kiln::try_parse_from(["kiln", "rm", "deb", "1"]).is_ok());
    }
}
