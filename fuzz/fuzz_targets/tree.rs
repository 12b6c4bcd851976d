//! The tree encoding read back from the store: what decodes encodes to the same bytes' tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::store::tree::Tree;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data) {
        let again = Tree::decode(&tree.encode()).expect("an encoded tree decodes");
        assert_eq!(again, tree);
    }
});
