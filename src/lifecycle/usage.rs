//! Disk usage (`strata du`): the bytes each image, generation and step holds in the store.
//!
//! A generation holds the file objects of every tree its entries reach (the image's steps, its
//! bases' steps). Counting is by object: an object is **unique** to a generation when no other
//! alive generation holds it (what removing that generation alone would free), unique to an image
//! when only that image's generations hold it (what `images rm IMAGE` would free), and
//! **shared** otherwise. Within a generation, each object is charged to the first step that
//! produced it, base first and dependencies before the steps built on them, so a package set or
//! script shows the bytes it brought in. Bytes are object content sizes; objects are stored
//! once, so the figures add up to the store's size and never count a file twice.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::graph::retention;
use crate::store::digest::Digest;
use crate::store::local::Store;
use crate::store::tree::{object_id, Node};

#[derive(Clone, Debug, Serialize)]
pub struct StepUsage {
    pub entry: Digest,
    pub kind: String,
    pub name: String,
    /// Objects first brought in by this step, and their bytes.
    pub files: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GenerationUsage {
    pub generation: u64,
    pub created: i64,
    pub pinned: bool,
    pub files: u64,
    /// Everything the generation holds.
    pub bytes: u64,
    /// Held by no other alive generation.
    pub unique_bytes: u64,
    pub steps: Vec<StepUsage>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImageUsage {
    pub image: String,
    /// Everything its alive generations hold.
    pub bytes: u64,
    /// Held by no other image.
    pub unique_bytes: u64,
    /// Held by this image and others too.
    pub shared_bytes: u64,
    pub generations: Vec<GenerationUsage>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Usage {
    /// Every file object in the store.
    pub store_bytes: u64,
    pub store_files: u64,
    /// Objects some alive generation holds.
    pub image_bytes: u64,
    /// Objects no generation holds (other roots, caches, or garbage `gc` would remove).
    pub other_bytes: u64,
    pub images: Vec<ImageUsage>,
}

/// Object sets of trees, as sorted indexes into one object table, computed once per tree.
struct Objects<'a> {
    store: &'a Store,
    index: HashMap<Digest, u32>,
    sizes: Vec<u64>,
    trees: HashMap<Digest, std::rc::Rc<Vec<u32>>>,
}

impl Objects<'_> {
    fn of_tree(&mut self, id: &Digest) -> anyhow::Result<std::rc::Rc<Vec<u32>>> {
        if let Some(v) = self.trees.get(id) {
            return Ok(v.clone());
        }
        let mut out = Vec::new();
        for (_, node) in self.store.tree(id)?.entries {
            match node {
                Node::Directory { tree } => out.extend(self.of_tree(&tree)?.iter().copied()),
                Node::File { meta, size, content, .. } => {
                    let oid = object_id(&meta, size, &content);
                    let next = self.index.len() as u32;
                    let i = *self.index.entry(oid).or_insert(next);
                    if i as usize == self.sizes.len() {
                        self.sizes.push(size);
                    }
                    out.push(i);
                }
                _ => {}
            }
        }
        out.sort_unstable();
        out.dedup();
        let rc = std::rc::Rc::new(out);
        self.trees.insert(*id, rc.clone());
        Ok(rc)
    }
}

/// Usage of every alive generation; `only` limits the report (not the counting) to one image.
pub fn usage(store: &Store, only: Option<&str>) -> anyhow::Result<Usage> {
    let all = store.db().all_objects()?;
    let store_bytes = all.iter().map(|o| o.1).sum();
    let mut objects = Objects { store, index: HashMap::new(), sizes: Vec::new(), trees: HashMap::new() };
    let pins = retention::pins(store)?;
    let gens = retention::alive_generations(store)?;
    if let Some(image) = only {
        if !gens.iter().any(|g| g.image == image) {
            anyhow::bail!("no alive generation of `{image}` in this store (see `strata images ls`)");
        }
    }

    // Per generation: its steps with their objects, first holder first.
    struct Gen {
        image: String,
        number: u64,
        created: i64,
        objects: Vec<u32>,
        steps: Vec<StepUsage>,
    }
    let mut per_gen = Vec::new();
    for g in &gens {
        let mut held: Vec<u32> = Vec::new();
        let mut charged = std::collections::HashSet::new();
        let mut steps = Vec::new();
        for e in store.closure(&g.entry)? {
            let objs = objects.of_tree(&e.tree)?;
            let (mut files, mut bytes) = (0, 0);
            for &o in objs.iter() {
                if charged.insert(o) {
                    files += 1;
                    bytes += objects.sizes[o as usize];
                    held.push(o);
                }
            }
            steps.push(StepUsage { entry: e.key, kind: e.kind, name: e.name, files, bytes });
        }
        held.sort_unstable();
        per_gen.push(Gen { image: g.image.clone(), number: g.number, created: g.created, objects: held, steps });
    }

    // Holders of each object: how many generations, and which image (or several).
    let n = objects.sizes.len();
    let mut gen_count = vec![0u32; n];
    let mut image_of: Vec<Option<usize>> = vec![None; n];
    let mut many_images = vec![false; n];
    let names: Vec<String> = {
        let mut v: Vec<String> = per_gen.iter().map(|g| g.image.clone()).collect();
        v.dedup();
        v
    };
    let image_index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    for g in &per_gen {
        let img = image_index[g.image.as_str()];
        for &o in &g.objects {
            gen_count[o as usize] += 1;
            match image_of[o as usize] {
                None => image_of[o as usize] = Some(img),
                Some(i) if i != img => many_images[o as usize] = true,
                _ => {}
            }
        }
    }
    let image_bytes: u64 = (0..n).filter(|&o| gen_count[o] > 0).map(|o| objects.sizes[o]).sum();

    let mut images: BTreeMap<String, ImageUsage> = BTreeMap::new();
    let mut image_objects: HashMap<String, Vec<u32>> = HashMap::new();
    for g in per_gen {
        if only.is_some_and(|i| i != g.image) {
            continue;
        }
        let bytes = g.objects.iter().map(|&o| objects.sizes[o as usize]).sum();
        let unique_bytes =
            g.objects.iter().filter(|&&o| gen_count[o as usize] == 1).map(|&o| objects.sizes[o as usize]).sum();
        image_objects.entry(g.image.clone()).or_default().extend(g.objects.iter().copied());
        let entry = images.entry(g.image.clone()).or_insert_with(|| ImageUsage {
            image: g.image.clone(),
            bytes: 0,
            unique_bytes: 0,
            shared_bytes: 0,
            generations: vec![],
        });
        entry.generations.push(GenerationUsage {
            generation: g.number,
            created: g.created,
            pinned: pins.contains(&(g.image.clone(), g.number)),
            files: g.objects.len() as u64,
            bytes,
            unique_bytes,
            steps: g.steps,
        });
    }
    for (image, mut objs) in image_objects {
        objs.sort_unstable();
        objs.dedup();
        let u = images.get_mut(&image).expect("every image with objects has a row");
        for o in objs {
            let size = objects.sizes[o as usize];
            u.bytes += size;
            if many_images[o as usize] {
                u.shared_bytes += size;
            } else {
                u.unique_bytes += size;
            }
        }
    }
    Ok(Usage {
        store_bytes,
        store_files: all.len() as u64,
        image_bytes,
        other_bytes: store_bytes - image_bytes.min(store_bytes),
        images: images.into_values().collect(),
    })
}

const PALETTE: [&str; 8] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"];

/// A picture of `u`: one bar per image (its generations' unique bytes, then what it shares with
/// other images), drawn to one scale, and for each image's newest generation the steps that
/// brought in the most bytes.
pub fn svg(u: &Usage) -> String {
    use crate::util::text::{bytes, xml};
    use std::fmt::Write;
    const W: f64 = 900.0;
    const LEFT: f64 = 200.0;
    const BAR: f64 = W - LEFT - 20.0;
    let max = u.images.iter().map(|i| i.bytes).max().unwrap_or(0).max(1) as f64;
    let scale = |b: u64| (b as f64 / max * BAR).max(if b > 0 { 1.0 } else { 0.0 });
    let mut body = String::new();
    let mut y = 60.0;
    let _ = write!(
        body,
        r#"<text x="10" y="24" font-size="16" font-weight="bold">strata du: {} in the store, {} held by images</text>"#,
        bytes(u.store_bytes),
        bytes(u.image_bytes)
    );
    let _ = write!(
        body,
        r##"<text x="10" y="44" font-size="11" fill="#555">bars: bytes unique to each generation (colours, oldest first), the image's other bytes, and bytes shared with other images (grey)</text>"##
    );
    for img in &u.images {
        let _ = write!(
            body,
            r##"<text x="10" y="{}" font-size="13">{}</text><text x="10" y="{}" font-size="10" fill="#555">{} · {} unique · {} shared</text>"##,
            y + 13.0,
            xml(&img.image),
            y + 26.0,
            bytes(img.bytes),
            bytes(img.unique_bytes),
            bytes(img.shared_bytes)
        );
        let mut x = LEFT;
        let gen_unique: u64 = img.generations.iter().map(|g| g.unique_bytes).sum();
        for (i, g) in img.generations.iter().enumerate() {
            let w = scale(g.unique_bytes);
            if w > 0.0 {
                let _ = write!(
                    body,
                    r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="28" fill="{}"><title>{}/{}: {} unique{}</title></rect>"#,
                    PALETTE[i % PALETTE.len()],
                    xml(&img.image),
                    g.generation,
                    bytes(g.unique_bytes),
                    if g.pinned { " (pinned)" } else { "" }
                );
                x += w;
            }
        }
        let rest = img.bytes.saturating_sub(gen_unique + img.shared_bytes);
        for (amount, colour, what) in [
            (rest, "#9ecae1", "shared between its generations"),
            (img.shared_bytes, "#bbbbbb", "shared with other images"),
        ] {
            let w = scale(amount);
            if w > 0.0 {
                let _ = write!(
                    body,
                    r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="28" fill="{colour}"><title>{}: {} {what}</title></rect>"#,
                    xml(&img.image),
                    bytes(amount)
                );
                x += w;
            }
        }
        y += 40.0;
        // The newest generation's biggest steps.
        if let Some(newest) = img.generations.last() {
            let mut steps: Vec<&StepUsage> = newest.steps.iter().filter(|s| s.bytes > 0).collect();
            steps.sort_by_key(|s| std::cmp::Reverse(s.bytes));
            let top = newest.bytes.max(1) as f64;
            for s in steps.iter().take(6) {
                let w = (s.bytes as f64 / top * (BAR / 2.0)).max(1.0);
                let _ = write!(
                    body,
                    r##"<text x="30" y="{}" font-size="10" fill="#333">{}</text><rect x="{LEFT}" y="{}" width="{w:.1}" height="10" fill="#6baed6"/><text x="{:.1}" y="{}" font-size="10" fill="#333">{} · {} files</text>"##,
                    y + 9.0,
                    xml(&shorten(&s.name, 30)),
                    y,
                    LEFT + w + 6.0,
                    y + 9.0,
                    bytes(s.bytes),
                    s.files
                );
                y += 14.0;
            }
            y += 16.0;
        }
    }
    if u.images.is_empty() {
        let _ = write!(body, r#"<text x="10" y="{}" font-size="12">no images built yet</text>"#, y + 12.0);
        y += 24.0;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{:.0}\" viewBox=\"0 0 {W} {:.0}\" font-family=\"sans-serif\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>{body}</svg>\n",
        y + 10.0,
        y + 10.0
    )
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let tail: String = s.chars().rev().take(max - 1).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}
