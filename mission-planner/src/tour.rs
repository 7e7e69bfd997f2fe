//! Tour ordering: a closed tour from a fixed start (home) through nodes
//! that each have one or more *variants* (a point of interest has one; a
//! coverage cell has up to four: which corner it is entered at). Built by
//! nearest neighbour, then improved by 2-opt, Or-opt (moving chains of 1–3
//! nodes, possibly reversed) and variant changes until no move improves.
//!
//! Costs between nodes come from a symmetric matrix over *ports* (entry and
//! exit points); reversing a stretch of the tour reverses each node in it,
//! which is why each variant knows its reverse.

/// One way to visit a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeVariant {
    pub entry: usize,
    pub exit: usize,
    /// Cost of the visit itself (time inside a cell, dwell at a point).
    pub cost: f64,
}

/// A node with its variants. Node 0 of a problem is the start.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub variants: Vec<NodeVariant>,
}

impl Node {
    pub fn point(port: usize, cost: f64) -> Self {
        Node {
            variants: vec![NodeVariant {
                entry: port,
                exit: port,
                cost,
            }],
        }
    }
}

/// A tour problem: nodes and the port-to-port cost matrix (symmetric).
#[derive(Clone)]
pub struct Problem<'a> {
    pub nodes: &'a [Node],
    pub cost: &'a dyn Fn(usize, usize) -> f64,
}

/// A tour: `(node, variant)` in visiting order, starting with node 0;
/// closes back to node 0.
pub type Tour = Vec<(usize, usize)>;

impl Problem<'_> {
    fn c(&self, a: (usize, usize), b: (usize, usize)) -> f64 {
        let va = self.nodes[a.0].variants[a.1];
        let vb = self.nodes[b.0].variants[b.1];
        (self.cost)(va.exit, vb.entry)
    }

    fn internal(&self, a: (usize, usize)) -> f64 {
        self.nodes[a.0].variants[a.1].cost
    }

    /// The variant that flies `v` backwards.
    fn reverse(&self, a: (usize, usize)) -> (usize, usize) {
        let vs = &self.nodes[a.0].variants;
        let v = vs[a.1];
        let r = vs
            .iter()
            .position(|w| w.entry == v.exit && w.exit == v.entry)
            .unwrap_or(a.1);
        (a.0, r)
    }

    /// Total cost of a closed tour.
    pub fn tour_cost(&self, t: &Tour) -> f64 {
        let mut s = 0.0;
        for i in 0..t.len() {
            s += self.internal(t[i]);
            s += self.c(t[i], t[(i + 1) % t.len()]);
        }
        s
    }

    /// Nearest-neighbour construction from node 0.
    pub fn nearest_neighbour(&self) -> Tour {
        let n = self.nodes.len();
        let mut t = vec![(0, 0)];
        let mut used = vec![false; n];
        used[0] = true;
        for _ in 1..n {
            let cur = *t.last().unwrap();
            let mut best = (f64::INFINITY, usize::MAX, 0);
            for (j, node) in self.nodes.iter().enumerate() {
                if used[j] {
                    continue;
                }
                for k in 0..node.variants.len() {
                    let c = self.c(cur, (j, k)) + self.internal((j, k));
                    if c < best.0 || best.1 == usize::MAX {
                        best = (c, j, k);
                    }
                }
            }
            used[best.1] = true;
            t.push((best.1, best.2));
        }
        t
    }

    /// Reverse positions `i..=j` of the tour (1 ≤ i ≤ j < len).
    fn reverse_range(&self, t: &mut Tour, i: usize, j: usize) {
        t[i..=j].reverse();
        for x in &mut t[i..=j] {
            *x = self.reverse(*x);
        }
    }

    /// Gain of reversing `i..=j` (positive = better).
    fn two_opt_gain(&self, t: &Tour, i: usize, j: usize) -> f64 {
        let n = t.len();
        let (a, b, c, d) = (t[i - 1], t[i], t[j], t[(j + 1) % n]);
        let old = self.c(a, b) + self.c(c, d);
        let new = self.c(a, self.reverse(c)) + self.c(self.reverse(b), d);
        old - new
    }

    /// First improving 2-opt move, if any (used by tests as a checker too).
    pub fn improving_two_opt(&self, t: &Tour, eps: f64) -> Option<(usize, usize)> {
        let n = t.len();
        for i in 1..n {
            for j in i..n {
                if self.two_opt_gain(t, i, j) > eps {
                    return Some((i, j));
                }
            }
        }
        None
    }

    fn two_opt(&self, t: &mut Tour) -> bool {
        let n = t.len();
        let mut improved = false;
        loop {
            let mut any = false;
            for i in 1..n {
                for j in i..n {
                    if self.two_opt_gain(t, i, j) > 1e-9 {
                        self.reverse_range(t, i, j);
                        any = true;
                    }
                }
            }
            if !any {
                return improved;
            }
            improved = true;
        }
    }

    /// Move chains of 1..=3 nodes elsewhere (optionally reversed).
    fn or_opt(&self, t: &mut Tour) -> bool {
        let n = t.len();
        let mut improved = false;
        for len in 1..=3usize {
            if n < len + 2 {
                break;
            }
            let mut i = 1;
            while i + len <= n {
                let j = i + len - 1;
                let prev = t[i - 1];
                let next = t[(j + 1) % n];
                let remove_gain = self.c(prev, t[i]) + self.c(t[j], next) - self.c(prev, next);
                let mut best: Option<(f64, usize, bool)> = None;
                for k in 0..n {
                    // Insert between t[k] and t[k+1]; k not inside the chain
                    // nor its left neighbour.
                    if k >= i - 1 && k <= j {
                        continue;
                    }
                    let a = t[k];
                    let b = t[(k + 1) % n];
                    let fwd = self.c(a, t[i]) + self.c(t[j], b) - self.c(a, b);
                    let rev = self.c(a, self.reverse(t[j])) + self.c(self.reverse(t[i]), b)
                        - self.c(a, b);
                    for (add, r) in [(fwd, false), (rev, true)] {
                        let gain = remove_gain - add;
                        if gain > 1e-9 && best.is_none_or(|bb| gain > bb.0) {
                            best = Some((gain, k, r));
                        }
                    }
                }
                if let Some((_, k, r)) = best {
                    let mut chain: Vec<(usize, usize)> = t.drain(i..=j).collect();
                    if r {
                        chain.reverse();
                        for x in &mut chain {
                            *x = self.reverse(*x);
                        }
                    }
                    let pos = if k < i { k + 1 } else { k + 1 - len };
                    for (m, x) in chain.into_iter().enumerate() {
                        t.insert(pos + m, x);
                    }
                    improved = true;
                } else {
                    i += 1;
                }
            }
        }
        improved
    }

    /// Try every variant of every node in place.
    fn variants_pass(&self, t: &mut Tour) -> bool {
        let n = t.len();
        let mut improved = false;
        for i in 1..n {
            let (prev, next) = (t[i - 1], t[(i + 1) % n]);
            let node = t[i].0;
            let cur = self.c(prev, t[i]) + self.internal(t[i]) + self.c(t[i], next);
            for k in 0..self.nodes[node].variants.len() {
                let x = (node, k);
                let c = self.c(prev, x) + self.internal(x) + self.c(x, next);
                if c < cur - 1e-9 {
                    t[i] = x;
                    improved = true;
                    break;
                }
            }
        }
        improved
    }

    /// Nearest neighbour, then local search to a local optimum of 2-opt,
    /// Or-opt and variant changes.
    pub fn solve(&self) -> Tour {
        let mut t = self.nearest_neighbour();
        if t.len() < 3 {
            self.variants_pass(&mut t);
            return t;
        }
        for _ in 0..1000 {
            let a = self.two_opt(&mut t);
            let b = self.or_opt(&mut t);
            let c = self.variants_pass(&mut t);
            if !(a || b || c) {
                break;
            }
        }
        t
    }

    /// Exact optimum by Held–Karp dynamic programming over nodes and
    /// variants (exponential: for tests and tiny instances, ≤ 12 nodes).
    pub fn exact(&self) -> Option<(f64, Tour)> {
        let n = self.nodes.len();
        if n > 13 || n == 0 {
            return None;
        }
        if n == 1 {
            return Some((self.tour_cost(&vec![(0, 0)]), vec![(0, 0)]));
        }
        let m = n - 1; // nodes 1..n
        let maxv = self.nodes.iter().map(|x| x.variants.len()).max().unwrap();
        let idx = |mask: usize, j: usize, v: usize| (mask * m + j) * maxv + v;
        let size = (1usize << m) * m * maxv;
        let mut dp = vec![f64::INFINITY; size];
        let mut par = vec![(usize::MAX, usize::MAX); size];
        let start = (0usize, 0usize);
        for j in 0..m {
            for v in 0..self.nodes[j + 1].variants.len() {
                dp[idx(1 << j, j, v)] =
                    self.internal(start) + self.c(start, (j + 1, v)) + self.internal((j + 1, v));
            }
        }
        for mask in 1usize..(1 << m) {
            for j in 0..m {
                if mask & (1 << j) == 0 {
                    continue;
                }
                for v in 0..self.nodes[j + 1].variants.len() {
                    let cur = dp[idx(mask, j, v)];
                    if !cur.is_finite() {
                        continue;
                    }
                    for k in 0..m {
                        if mask & (1 << k) != 0 {
                            continue;
                        }
                        for w in 0..self.nodes[k + 1].variants.len() {
                            let nm = mask | (1 << k);
                            let c =
                                cur + self.c((j + 1, v), (k + 1, w)) + self.internal((k + 1, w));
                            if c < dp[idx(nm, k, w)] {
                                dp[idx(nm, k, w)] = c;
                                par[idx(nm, k, w)] = (j, v);
                            }
                        }
                    }
                }
            }
        }
        let full = (1 << m) - 1;
        let mut best = (f64::INFINITY, 0, 0);
        for j in 0..m {
            for v in 0..self.nodes[j + 1].variants.len() {
                let c = dp[idx(full, j, v)] + self.c((j + 1, v), start);
                if c < best.0 {
                    best = (c, j, v);
                }
            }
        }
        let mut tour = Vec::new();
        let (mut mask, mut j, mut v) = (full, best.1, best.2);
        loop {
            tour.push((j + 1, v));
            let (pj, pv) = par[idx(mask, j, v)];
            mask &= !(1 << j);
            if pj == usize::MAX {
                break;
            }
            j = pj;
            v = pv;
        }
        tour.push(start);
        tour.reverse();
        Some((best.0, tour))
    }
}

/// Order points by a symmetric distance matrix: a closed tour from point 0
/// (2-opt + Or-opt local optimum). Returns the visiting order.
pub fn order_points(dist: &[Vec<f64>]) -> Vec<usize> {
    let nodes: Vec<Node> = (0..dist.len()).map(|i| Node::point(i, 0.0)).collect();
    let cost = |a: usize, b: usize| dist[a][b];
    let pb = Problem {
        nodes: &nodes,
        cost: &cost,
    };
    pb.solve().into_iter().map(|(n, _)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square_pts() -> Vec<(f64, f64)> {
        vec![
            (0.0, 0.0),
            (10.0, 10.0),
            (10.0, 0.0),
            (0.0, 10.0),
            (5.0, -1.0),
        ]
    }

    #[test]
    fn solves_a_small_instance_to_the_optimum() {
        let pts = square_pts();
        let d: Vec<Vec<f64>> = pts
            .iter()
            .map(|a| pts.iter().map(|b| (a.0 - b.0).hypot(a.1 - b.1)).collect())
            .collect();
        let nodes: Vec<Node> = (0..pts.len()).map(|i| Node::point(i, 0.0)).collect();
        let cost = |a: usize, b: usize| d[a][b];
        let pb = Problem {
            nodes: &nodes,
            cost: &cost,
        };
        let t = pb.solve();
        let (opt, _) = pb.exact().unwrap();
        assert!(
            (pb.tour_cost(&t) - opt).abs() < 1e-9,
            "{} vs {opt}",
            pb.tour_cost(&t)
        );
        assert_eq!(t.len(), pts.len());
        assert_eq!(t[0], (0, 0));
    }

    #[test]
    fn variants_reverse_with_the_tour() {
        // A "cell" from port 1 to port 2, or back.
        let ports: [(f64, f64); 4] = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 20.0)];
        let d = |a: usize, b: usize| {
            let (x, y) = (ports[a], ports[b]);
            (x.0 - y.0).hypot(x.1 - y.1)
        };
        let nodes = vec![
            Node::point(0, 0.0),
            Node {
                variants: vec![
                    NodeVariant {
                        entry: 1,
                        exit: 2,
                        cost: 5.0,
                    },
                    NodeVariant {
                        entry: 2,
                        exit: 1,
                        cost: 5.0,
                    },
                ],
            },
            Node::point(3, 0.0),
        ];
        let pb = Problem {
            nodes: &nodes,
            cost: &d,
        };
        let t = pb.solve();
        let (opt, _) = pb.exact().unwrap();
        assert!((pb.tour_cost(&t) - opt).abs() < 1e-9);
    }
}
