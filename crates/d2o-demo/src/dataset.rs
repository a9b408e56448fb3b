//! The demo's retail data set: a deterministic generator (no I/O).
//!
//! Everything comes from one [`SplitMix64`] stream seeded with [`SEED`], so every run, on every
//! machine, produces the same rows. The figures that follow from the seed:
//!
//! | what | rows |
//! |---|---|
//! | `customers` version 0 (initial load) | 1,000 (ids 1..=1000) |
//! | `customers` version 1 (update) | 1,000; [`SEGMENT_MOVES`] = 50 of them moved segment |
//! | `sales` version 0 (initial load) | 5,000 (transaction ids 1..=5000, Jan–Oct 2024) |
//! | `sales` version 1 (a later batch) | 6,000 (1,000 more, ids 5001..=6000, Nov–Dec 2024) |
//!
//! Headline figures that follow (checked by the tests, and reproduced by the report): revenue
//! $2,061,039.77 at `sales` version 0 and $2,436,519.57 at version 1 (the later batch adds
//! $375,479.80); segments at `customers` version 1: Consumer 488, Corporate 301,
//! Small Business 211 customers; the best customer is #1 (Quinn Schmidt, $79,105.30).
//!
//! Amounts are whole cents (`quantity * unit_price`, with `unit_price` in cents), so sums in
//! cents are exact and every reader computes the same revenue.

/// The seed of the whole data set.
pub const SEED: u64 = 0x00D2_0DE0_2024;
/// Customers in the initial load.
pub const CUSTOMERS: usize = 1_000;
/// Sales in the initial load (`sales` version 0).
pub const INITIAL_SALES: usize = 5_000;
/// Sales in the later batch (`sales` version 1).
pub const LATER_SALES: usize = 1_000;
/// Customers that move segment in the update (`customers` version 1).
pub const SEGMENT_MOVES: usize = 50;

/// Customer segments, with the share of customers drawn into each (percent).
pub const SEGMENTS: [(&str, u64); 3] = [("Consumer", 50), ("Corporate", 30), ("Small Business", 20)];
/// Regions; `sales` is partitioned by region.
pub const REGIONS: [&str; 4] = ["East", "North", "South", "West"];
/// Product categories and their unit price range in cents.
pub const CATEGORIES: [(&str, u64, u64); 6] = [
    ("Books", 500, 6_000),
    ("Clothing", 1_000, 12_000),
    ("Electronics", 5_000, 80_000),
    ("Furniture", 8_000, 60_000),
    ("Groceries", 200, 4_000),
    ("Sports", 1_500, 30_000),
];

const FIRST_NAMES: [&str; 24] = [
    "Ada", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Luca", "Maya",
    "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Samir", "Tara", "Umar", "Vera", "Wen", "Yusuf",
];
const LAST_NAMES: [&str; 20] = [
    "Andersen", "Baptiste", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova", "Jensen",
    "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov", "Rossi", "Schmidt", "Tanaka", "Weber",
];

/// Days since 1970-01-01 of 2021-01-01, the first signup date.
const SIGNUP_START: i32 = 18_628;
/// Signup dates span 2021-01-01..=2023-12-31.
const SIGNUP_DAYS: u64 = 1_095;
/// Days since 1970-01-01 of 2024-01-01.
const SALES_START: i32 = 19_723;
/// The initial load covers 2024-01-01..=2024-10-31.
const INITIAL_DAYS: u64 = 305;
/// The later batch covers 2024-11-01..=2024-12-31.
const LATER_DAYS: u64 = 61;

/// A small, well-known PRNG (Steele, Lea and Flood's SplitMix64): fast, seedable, and the same
/// everywhere. Not for cryptography.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is negligible for the small `n` used here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One row of `customers`.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub segment: String,
    pub region: String,
    pub age: i32,
    /// Days since 1970-01-01.
    pub signup_date: i32,
}

/// One row of `sales`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sale {
    pub transaction_id: i64,
    pub customer_id: i64,
    /// Days since 1970-01-01.
    pub date: i32,
    pub product_category: String,
    pub quantity: i32,
    pub unit_price: f64,
    pub amount: f64,
    pub region: String,
}

/// The whole data set, version by version.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `customers` at version 0.
    pub customers_v0: Vec<Customer>,
    /// `customers` at version 1 (after the segment moves).
    pub customers_v1: Vec<Customer>,
    /// Ids of the customers that moved segment, ascending.
    pub moved: Vec<i64>,
    /// `sales` at version 0.
    pub sales_initial: Vec<Sale>,
    /// The rows appended at `sales` version 1.
    pub sales_later: Vec<Sale>,
}

impl Dataset {
    /// Generates the data set from [`SEED`].
    pub fn generate() -> Dataset {
        let mut rng = SplitMix64::new(SEED);
        let customers_v0: Vec<Customer> = (1..=CUSTOMERS as i64).map(|id| customer(&mut rng, id)).collect();
        let sales_initial = sales(&mut rng, &customers_v0, 1, INITIAL_SALES, SALES_START, INITIAL_DAYS);
        let sales_later = sales(
            &mut rng,
            &customers_v0,
            INITIAL_SALES as i64 + 1,
            LATER_SALES,
            SALES_START + INITIAL_DAYS as i32,
            LATER_DAYS,
        );
        // Partial Fisher-Yates: the first SEGMENT_MOVES of a shuffled id list move segment.
        let mut ids: Vec<i64> = customers_v0.iter().map(|c| c.id).collect();
        for i in 0..SEGMENT_MOVES {
            let j = i + rng.below((ids.len() - i) as u64) as usize;
            ids.swap(i, j);
        }
        let mut moved = ids[..SEGMENT_MOVES].to_vec();
        moved.sort_unstable();
        let mut customers_v1 = customers_v0.clone();
        for c in customers_v1.iter_mut().filter(|c| moved.binary_search(&c.id).is_ok()) {
            let current = SEGMENTS.iter().position(|(s, _)| *s == c.segment).unwrap_or(0);
            let step = 1 + rng.below(SEGMENTS.len() as u64 - 1) as usize;
            c.segment = SEGMENTS[(current + step) % SEGMENTS.len()].0.to_owned();
        }
        Dataset { customers_v0, customers_v1, moved, sales_initial, sales_later }
    }

    /// `sales` at version 1: the initial load and the later batch.
    pub fn sales_v1(&self) -> Vec<Sale> {
        self.sales_initial.iter().chain(&self.sales_later).cloned().collect()
    }
}

fn customer(rng: &mut SplitMix64, id: i64) -> Customer {
    let first = FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize];
    let last = LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize];
    let mut roll = rng.below(100);
    let mut segment = SEGMENTS[0].0;
    for (s, weight) in SEGMENTS {
        if roll < weight {
            segment = s;
            break;
        }
        roll -= weight;
    }
    let region = REGIONS[rng.below(REGIONS.len() as u64) as usize];
    // Ages 18..=79, denser in the middle (sum of two uniforms).
    let age = 18 + (rng.below(32) + rng.below(31)) as i32;
    let signup_date = SIGNUP_START + rng.below(SIGNUP_DAYS) as i32;
    Customer {
        id,
        name: format!("{first} {last}"),
        email: format!("{}.{}{id}@example.com", first.to_lowercase(), last.to_lowercase()),
        segment: segment.to_owned(),
        region: region.to_owned(),
        age,
        signup_date,
    }
}

fn sales(rng: &mut SplitMix64, customers: &[Customer], first_id: i64, n: usize, start: i32, days: u64) -> Vec<Sale> {
    (0..n as i64)
        .map(|i| {
            // Squaring a uniform skews purchases toward low indexes: a few customers buy a lot,
            // so the top-10 chart has something to show.
            let u = rng.unit();
            let idx = ((u * u) * customers.len() as f64) as usize;
            let c = &customers[idx.min(customers.len() - 1)];
            let (category, lo, hi) = CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize];
            let price_cents = lo + rng.below(hi - lo + 1);
            // Mostly 1-2 items, sometimes up to 5.
            let quantity = [1, 1, 1, 2, 2, 3, 4, 5][rng.below(8) as usize];
            Sale {
                transaction_id: first_id + i,
                customer_id: c.id,
                date: start + rng.below(days) as i32,
                product_category: category.to_owned(),
                quantity,
                unit_price: price_cents as f64 / 100.0,
                amount: (price_cents * quantity as u64) as f64 / 100.0,
                region: c.region.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_has_the_documented_shape() {
        let a = Dataset::generate();
        let b = Dataset::generate();
        assert_eq!(a.customers_v0, b.customers_v0);
        assert_eq!(a.sales_initial, b.sales_initial);
        assert_eq!(a.customers_v0.len(), CUSTOMERS);
        assert_eq!(a.sales_initial.len(), INITIAL_SALES);
        assert_eq!(a.sales_later.len(), LATER_SALES);
        assert_eq!(a.sales_v1().len(), INITIAL_SALES + LATER_SALES);
        assert_eq!(a.moved.len(), SEGMENT_MOVES);
        let changed = a.customers_v0.iter().zip(&a.customers_v1).filter(|(x, y)| x.segment != y.segment).count();
        assert_eq!(changed, SEGMENT_MOVES);
        let cents = |rows: &[Sale]| rows.iter().map(|s| (s.amount * 100.0).round() as i64).sum::<i64>();
        assert_eq!(cents(&a.sales_initial), 206_103_977);
        assert_eq!(cents(&a.sales_later), 37_547_980);
        let consumers = a.customers_v1.iter().filter(|c| c.segment == "Consumer").count();
        assert_eq!(consumers, 488);
        for s in a.sales_v1() {
            let c = &a.customers_v0[(s.customer_id - 1) as usize];
            assert_eq!(c.region, s.region);
            assert!(s.amount > 0.0);
        }
    }
}
