//! Grid cells (网格) from a GeoJSON layer, spatially indexed.
//!
//! The layer is a FeatureCollection of Polygon / MultiPolygon features
//! with properties `grid_id` (required), `county`, `township`, `village`.
//! Bounding boxes go into an R-tree (rstar); a point query checks the few
//! candidate polygons exactly (geo's `Contains`, holes respected). Where
//! cells overlap (a badly drawn layer), the smallest containing cell wins.

use geo::{Area, BoundingRect, Contains, Coord, LineString, MultiPolygon, Point, Polygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, AABB};
use tiancha_protocol::GridCell;

#[derive(Debug, thiserror::Error)]
pub enum GridError {
    #[error("grid layer {origin}: {message}")]
    Bad { origin: String, message: String },
}

struct Cell {
    info: GridCell,
    shape: MultiPolygon<f64>,
    area: f64,
}

/// The index. Cheap to query from many threads (immutable).
pub struct GridIndex {
    cells: Vec<Cell>,
    tree: RTree<GeomWithData<Rectangle<[f64; 2]>, usize>>,
}

impl std::fmt::Debug for GridIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GridIndex({} cells)", self.cells.len())
    }
}

fn ring(v: &serde_json::Value, at: &str) -> Result<LineString<f64>, String> {
    let pts = v
        .as_array()
        .ok_or_else(|| format!("{at}: a ring must be an array of positions"))?;
    if pts.len() < 4 {
        return Err(format!("{at}: a ring needs at least 4 positions (closed)"));
    }
    let mut coords = Vec::with_capacity(pts.len());
    for (i, p) in pts.iter().enumerate() {
        let a = p.as_array().filter(|a| a.len() >= 2);
        let (x, y) = match a.map(|a| (a[0].as_f64(), a[1].as_f64())) {
            Some((Some(x), Some(y))) => (x, y),
            _ => return Err(format!("{at}[{i}]: a position is [lon, lat]")),
        };
        if !(-180.0..=180.0).contains(&x) || !(-90.0..=90.0).contains(&y) {
            return Err(format!("{at}[{i}]: [{x}, {y}] is not a WGS84 [lon, lat]"));
        }
        coords.push(Coord { x, y });
    }
    Ok(LineString::new(coords))
}

fn polygon(v: &serde_json::Value, at: &str) -> Result<Polygon<f64>, String> {
    let rings = v
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| format!("{at}: a polygon is a non-empty array of rings"))?;
    let ext = ring(&rings[0], &format!("{at}[0]"))?;
    let holes = rings[1..]
        .iter()
        .enumerate()
        .map(|(i, r)| ring(r, &format!("{at}[{}]", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Polygon::new(ext, holes))
}

/// Parse a GeoJSON Polygon or MultiPolygon geometry.
pub fn geometry_to_multipolygon(
    g: &serde_json::Value,
    at: &str,
) -> Result<MultiPolygon<f64>, String> {
    let coords = &g["coordinates"];
    match g["type"].as_str() {
        Some("Polygon") => Ok(MultiPolygon::new(vec![polygon(
            coords,
            &format!("{at}.coordinates"),
        )?])),
        Some("MultiPolygon") => {
            let ps = coords
                .as_array()
                .ok_or_else(|| format!("{at}.coordinates: must be an array of polygons"))?;
            Ok(MultiPolygon::new(
                ps.iter()
                    .enumerate()
                    .map(|(i, p)| polygon(p, &format!("{at}.coordinates[{i}]")))
                    .collect::<Result<_, _>>()?,
            ))
        }
        other => Err(format!(
            "{at}.type: expected Polygon or MultiPolygon, got {}",
            other.unwrap_or("nothing")
        )),
    }
}

impl GridIndex {
    pub fn empty() -> Self {
        Self {
            cells: vec![],
            tree: RTree::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Build from GeoJSON text; `origin` names the source in errors.
    pub fn from_geojson(text: &str, origin: &str) -> Result<Self, GridError> {
        let bad = |message: String| GridError::Bad {
            origin: origin.to_string(),
            message,
        };
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        if v["type"] != "FeatureCollection" {
            return Err(bad("expected a GeoJSON FeatureCollection".into()));
        }
        let feats = v["features"]
            .as_array()
            .ok_or_else(|| bad("`features` must be an array".into()))?;
        let mut cells = vec![];
        for (i, f) in feats.iter().enumerate() {
            let at = format!("features[{i}]");
            let p = &f["properties"];
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            let grid_id = s("grid_id");
            if grid_id.is_empty() {
                // Not a grid cell (another kind of feature in a shared layer).
                continue;
            }
            let shape =
                geometry_to_multipolygon(&f["geometry"], &format!("{at}.geometry")).map_err(bad)?;
            let area = shape.unsigned_area();
            cells.push(Cell {
                info: GridCell {
                    grid_id,
                    county: s("county"),
                    township: s("township"),
                    village: s("village"),
                },
                shape,
                area,
            });
        }
        let tree = RTree::bulk_load(
            cells
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let r = c.shape.bounding_rect()?;
                    Some(GeomWithData::new(
                        Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]),
                        i,
                    ))
                })
                .collect(),
        );
        Ok(Self { cells, tree })
    }

    /// The cell containing a WGS84 point.
    pub fn lookup(&self, lat_deg: f64, lon_deg: f64) -> Option<&GridCell> {
        let p = Point::new(lon_deg, lat_deg);
        self.tree
            .locate_in_envelope_intersecting(&AABB::from_point([lon_deg, lat_deg]))
            .map(|g| &self.cells[g.data])
            .filter(|c| c.shape.contains(&p))
            .min_by(|a, b| a.area.total_cmp(&b.area))
            .map(|c| &c.info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(id: &str, village: &str, x0: f64, y0: f64, d: f64, hole: bool) -> serde_json::Value {
        let mut rings = vec![serde_json::json!([
            [x0, y0],
            [x0 + d, y0],
            [x0 + d, y0 + d],
            [x0, y0 + d],
            [x0, y0]
        ])];
        if hole {
            let (a, b) = (x0 + d * 0.4, x0 + d * 0.6);
            let (c, e) = (y0 + d * 0.4, y0 + d * 0.6);
            rings.push(serde_json::json!([[a, c], [b, c], [b, e], [a, e], [a, c]]));
        }
        serde_json::json!({
            "type": "Feature",
            "properties": {"grid_id": id, "county": "Xinzhou", "township": "Shaxi", "village": village},
            "geometry": {"type": "Polygon", "coordinates": rings}
        })
    }

    #[test]
    fn finds_the_containing_cell_respecting_holes() {
        let fc = serde_json::json!({"type": "FeatureCollection", "features": [
            square("A", "Xiajia", 117.93, 28.44, 0.01, true),
            square("B", "Shangjia", 117.94, 28.44, 0.01, false),
            {"type": "Feature", "properties": {"kind": "no_fly_zone"},
             "geometry": {"type": "Point", "coordinates": [117.9, 28.4]}}
        ]});
        let g = GridIndex::from_geojson(&fc.to_string(), "t").unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g.lookup(28.441, 117.931).unwrap().village, "Xiajia");
        assert_eq!(g.lookup(28.445, 117.945).unwrap().grid_id, "B");
        assert!(g.lookup(28.445, 117.935).is_none(), "in the hole");
        assert!(g.lookup(29.0, 117.0).is_none());
    }

    #[test]
    fn many_cells_stay_correct() {
        let mut feats = vec![];
        for i in 0..50 {
            for j in 0..50 {
                feats.push(square(
                    &format!("{i}-{j}"),
                    "v",
                    117.0 + i as f64 * 0.01,
                    28.0 + j as f64 * 0.01,
                    0.01,
                    false,
                ));
            }
        }
        let fc = serde_json::json!({"type": "FeatureCollection", "features": feats});
        let g = GridIndex::from_geojson(&fc.to_string(), "t").unwrap();
        assert_eq!(g.lookup(28.255, 117.125).unwrap().grid_id, "12-25");
    }

    #[test]
    fn errors_say_where() {
        let e = GridIndex::from_geojson("{}", "grid.geojson").unwrap_err();
        assert!(e.to_string().contains("FeatureCollection"), "{e}");
        let fc = serde_json::json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"grid_id": "x"},
             "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [400, 1], [0, 0]]]}}
        ]});
        let e = GridIndex::from_geojson(&fc.to_string(), "grid.geojson").unwrap_err();
        assert!(
            e.to_string()
                .contains("features[0].geometry.coordinates[0][2]"),
            "{e}"
        );
    }
}
