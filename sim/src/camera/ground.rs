//! The ground texture: a map-like picture of the scenario's area,
//! georeferenced on the local east/north plane at the scenario's origin.
//!
//! Generated procedurally from the [`GroundSpec`]: a patchwork of fields in
//! muted crop and soil colours with crop rows and field margins, water
//! with a muddy bank, roads, and villages of house roofs. Nothing small
//! and contrasting is drawn (no person-like blobs): the detector must find
//! only the people the scenario places.
//!
//! Texel `(x, y)` (column, row; centre at `+0.5`) is the ground point
//! `east = west_m + (x + 0.5)·m`, `north = north_m − (y + 0.5)·m` where
//! `m` is `metres_per_px`: north is up, east is right.

use opencv::core::{self, Mat, Point, Scalar, Size, Vector, CV_32FC3, CV_8UC1, CV_8UC3};
use opencv::imgproc;
use opencv::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tiancha_geometry::geodesy::{LatLon, LocalFrame};
use tiancha_protocol::GeoPoint;

use super::scenario::{GroundSpec, Scenario};
use super::CameraError;

/// Sub-pixel bits used when drawing.
const SHIFT: i32 = 3;

/// The generated texture and its georeference.
pub struct GroundTexture {
    /// BGR, 8 bits.
    pub image: Mat,
    /// What each texel is made of ([`Material`] as `u8`): the thermal
    /// view's temperatures (`super::thermal`).
    pub material: Mat,
    pub frame: LocalFrame,
    pub west_m: f64,
    pub north_m: f64,
    pub metres_per_px: f64,
    /// Ground altitude, m AMSL.
    pub alt_m: f64,
}

impl std::fmt::Debug for GroundTexture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroundTexture")
            .field("cols", &self.image.cols())
            .field("rows", &self.image.rows())
            .field("metres_per_px", &self.metres_per_px)
            .finish()
    }
}

/// What a texel of the ground is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Material {
    /// Crops, grass and soil: the fields (and anything not drawn over).
    Field = 0,
    /// Packed earth of a village's yards.
    Yard = 1,
    /// House roofs.
    Roof = 2,
    /// Road surface.
    Road = 3,
    /// Ponds.
    Water = 4,
}

impl GroundTexture {
    fn mark(
        &self,
        m: &mut Mat,
        ring: &Vector<Vector<Point>>,
        what: Material,
    ) -> Result<(), CameraError> {
        imgproc::fill_poly(
            m,
            ring,
            Scalar::all(what as u8 as f64),
            imgproc::LINE_8,
            SHIFT,
            Point::new(0, 0),
        )?;
        Ok(())
    }

    /// East/north metres → texel coordinates (continuous).
    pub fn texel_of_en(&self, east: f64, north: f64) -> (f64, f64) {
        (
            (east - self.west_m) / self.metres_per_px - 0.5,
            (self.north_m - north) / self.metres_per_px - 0.5,
        )
    }

    pub fn texel_of(&self, p: LatLon) -> (f64, f64) {
        let (e, n) = self.frame.to_en(p);
        self.texel_of_en(e, n)
    }

    /// Texel coordinates → ground point.
    pub fn latlon_of_texel(&self, x: f64, y: f64) -> LatLon {
        self.frame.from_en(
            self.west_m + (x + 0.5) * self.metres_per_px,
            self.north_m - (y + 0.5) * self.metres_per_px,
        )
    }

    /// Generate the texture of a scenario (seconds for a square kilometre
    /// at 0.25 m per texel).
    pub fn generate(s: &Scenario) -> Result<Self, CameraError> {
        let (w, h) = s.texture_size();
        let g = &s.ground;
        let mut t = GroundTexture {
            image: Mat::default(),
            material: Mat::default(),
            frame: s.frame(),
            west_m: g.west_m,
            north_m: g.north_m,
            metres_per_px: g.metres_per_px,
            alt_m: s.ground_alt_m,
        };
        let mut rng = StdRng::seed_from_u64(s.seed);
        let mut img = Mat::new_rows_cols_with_default(
            h as i32,
            w as i32,
            CV_8UC3,
            Scalar::new(88.0, 118.0, 112.0, 0.0),
        )?;
        let mut material = Mat::new_rows_cols_with_default(
            h as i32,
            w as i32,
            CV_8UC1,
            Scalar::all(Material::Field as u8 as f64),
        )?;
        t.draw_fields(&mut img, g, &mut rng)?;
        for v in &g.villages {
            t.draw_village(&mut img, &mut material, &v.polygon, v.houses, &mut rng)?;
        }
        for r in &g.roads {
            let pts = t.points(&r.path);
            let width = (r.width_m / g.metres_per_px).round().max(1.0) as i32;
            // Verge, then surface.
            imgproc::polylines(
                &mut img,
                &pts,
                false,
                Scalar::new(96.0, 128.0, 132.0, 0.0),
                width + (2.0 / g.metres_per_px) as i32,
                imgproc::LINE_AA,
                SHIFT,
            )?;
            imgproc::polylines(
                &mut img,
                &pts,
                false,
                Scalar::new(128.0, 132.0, 136.0, 0.0),
                width,
                imgproc::LINE_AA,
                SHIFT,
            )?;
            imgproc::polylines(
                &mut material,
                &pts,
                false,
                Scalar::all(Material::Road as u8 as f64),
                width,
                imgproc::LINE_8,
                SHIFT,
            )?;
        }
        for a in &g.water {
            let pts = t.points(&a.polygon);
            imgproc::polylines(
                &mut img,
                &pts,
                true,
                Scalar::new(92.0, 122.0, 138.0, 0.0),
                (3.0 / g.metres_per_px).round().max(1.0) as i32,
                imgproc::LINE_AA,
                SHIFT,
            )?;
            imgproc::fill_poly(
                &mut img,
                &pts,
                Scalar::new(116.0, 106.0, 72.0, 0.0),
                imgproc::LINE_AA,
                SHIFT,
                Point::new(0, 0),
            )?;
            t.mark(&mut material, &pts, Material::Water)?;
        }
        add_noise(&mut img, s.seed)?;
        t.image = img;
        t.material = material;
        Ok(t)
    }

    /// Scaled integer points (with [`SHIFT`] fraction bits) of a ring.
    fn points(&self, ring: &[GeoPoint]) -> Vector<Vector<Point>> {
        let f = (1 << SHIFT) as f64;
        let v: Vector<Point> = ring
            .iter()
            .map(|p| {
                let (x, y) = self.texel_of(LatLon::new(p.lat_deg, p.lon_deg));
                Point::new(
                    ((x + 0.5) * f).round() as i32,
                    ((y + 0.5) * f).round() as i32,
                )
            })
            .collect();
        let mut out = Vector::new();
        out.push(v);
        out
    }

    fn en_points(&self, pts: &[(f64, f64)]) -> Vector<Point> {
        let f = (1 << SHIFT) as f64;
        pts.iter()
            .map(|&(e, n)| {
                let (x, y) = self.texel_of_en(e, n);
                Point::new(
                    ((x + 0.5) * f).round() as i32,
                    ((y + 0.5) * f).round() as i32,
                )
            })
            .collect()
    }

    fn draw_fields(
        &self,
        img: &mut Mat,
        g: &GroundSpec,
        rng: &mut StdRng,
    ) -> Result<(), CameraError> {
        // A field grid rotated by a few degrees, cells of irregular size.
        let palette: [(f64, f64, f64); 8] = [
            (78.0, 122.0, 104.0), // young rice, muted green (BGR)
            (70.0, 110.0, 96.0),  // darker green
            (88.0, 130.0, 122.0), // grass
            (84.0, 112.0, 126.0), // dry stubble
            (90.0, 110.0, 132.0), // bare soil, light
            (74.0, 96.0, 116.0),  // ploughed soil
            (96.0, 134.0, 130.0), // pale green
            (80.0, 118.0, 116.0), // olive
        ];
        let angle = rng.random_range(-0.12..0.12f64);
        let (ca, sa) = (angle.cos(), angle.sin());
        let size = g.field_size_m;
        let half_diag = ((g.east_m - g.west_m).powi(2) + (g.north_m - g.south_m).powi(2)).sqrt();
        let cx = (g.east_m + g.west_m) / 2.0;
        let cy = (g.north_m + g.south_m) / 2.0;
        let rot = |u: f64, v: f64| (cx + u * ca - v * sa, cy + u * sa + v * ca);
        let mpp = g.metres_per_px;
        let margin_px = ((0.6 / mpp).round() as i32).max(1);
        let mut u = -half_diag / 2.0 - size;
        while u < half_diag / 2.0 + size {
            let du = size * rng.random_range(0.7..1.4);
            let mut v = -half_diag / 2.0 - size;
            while v < half_diag / 2.0 + size {
                let dv = size * rng.random_range(0.5..1.6);
                let corners = [
                    rot(u, v),
                    rot(u + du, v),
                    rot(u + du, v + dv),
                    rot(u, v + dv),
                ];
                let inside = corners.iter().any(|&(e, n)| {
                    e > g.west_m - size
                        && e < g.east_m + size
                        && n > g.south_m - size
                        && n < g.north_m + size
                });
                if inside {
                    let (b, gg, r) = palette[rng.random_range(0..palette.len())];
                    let j = rng.random_range(-6.0..6.0);
                    let colour = Scalar::new(b + j, gg + j, r + j, 0.0);
                    let quad = self.en_points(&corners);
                    imgproc::fill_convex_poly(img, &quad, colour, imgproc::LINE_8, SHIFT)?;
                    // Crop rows in about half the fields, 1 m apart.
                    if rng.random_bool(0.5) {
                        let along_u = rng.random_bool(0.5);
                        let shade = Scalar::new(b + j - 7.0, gg + j - 7.0, r + j - 5.0, 0.0);
                        let (len, n_rows) = if along_u { (du, dv) } else { (dv, du) };
                        let mut k = 0.5;
                        while k < n_rows {
                            let (a, bpt) = if along_u {
                                (rot(u, v + k), rot(u + len, v + k))
                            } else {
                                (rot(u + k, v), rot(u + k, v + len))
                            };
                            let p = self.en_points(&[a, bpt]);
                            imgproc::line(
                                img,
                                p.get(0)?,
                                p.get(1)?,
                                shade,
                                ((0.35 / mpp).round() as i32).max(1),
                                imgproc::LINE_8,
                                SHIFT,
                            )?;
                            k += 1.0;
                        }
                    }
                    // The field margin (a low earth bank).
                    let mut ring = Vector::<Vector<Point>>::new();
                    ring.push(quad);
                    imgproc::polylines(
                        img,
                        &ring,
                        true,
                        Scalar::new(86.0, 116.0, 124.0, 0.0),
                        margin_px,
                        imgproc::LINE_8,
                        SHIFT,
                    )?;
                }
                v += dv;
            }
            u += du;
        }
        Ok(())
    }

    fn draw_village(
        &self,
        img: &mut Mat,
        material: &mut Mat,
        polygon: &[GeoPoint],
        houses: u32,
        rng: &mut StdRng,
    ) -> Result<(), CameraError> {
        let ring: Vec<(f64, f64)> = polygon
            .iter()
            .map(|p| self.frame.to_en(LatLon::new(p.lat_deg, p.lon_deg)))
            .collect();
        // Yards: packed earth under the whole village.
        let mut v = Vector::<Vector<Point>>::new();
        v.push(self.en_points(&ring));
        imgproc::fill_poly(
            img,
            &v,
            Scalar::new(104.0, 120.0, 128.0, 0.0),
            imgproc::LINE_AA,
            SHIFT,
            Point::new(0, 0),
        )?;
        self.mark(material, &v, Material::Yard)?;
        let (min_e, max_e) = ring
            .iter()
            .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
        let (min_n, max_n) = ring
            .iter()
            .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
        let angle = rng.random_range(-0.2..0.2f64);
        let roofs: [(f64, f64, f64); 4] = [
            (120.0, 124.0, 128.0), // grey tiles
            (96.0, 100.0, 150.0),  // faded terracotta
            (150.0, 132.0, 112.0), // blue-grey steel
            (140.0, 146.0, 150.0), // concrete
        ];
        let mut placed: Vec<(f64, f64, f64)> = Vec::new();
        let mut tries = 0;
        while placed.len() < houses as usize && tries < houses as usize * 50 {
            tries += 1;
            let c = (
                rng.random_range(min_e..max_e),
                rng.random_range(min_n..max_n),
            );
            if !point_in_ring(c, &ring) {
                continue;
            }
            let (w, d): (f64, f64) = (rng.random_range(8.0..14.0), rng.random_range(6.0..10.0));
            let r = w.hypot(d) / 2.0;
            if placed
                .iter()
                .any(|p| (p.0 - c.0).hypot(p.1 - c.1) < p.2 + r + 2.0)
            {
                continue;
            }
            placed.push((c.0, c.1, r));
            let a = angle
                + if rng.random_bool(0.2) {
                    std::f64::consts::FRAC_PI_2
                } else {
                    0.0
                };
            let (ca, sa) = (a.cos(), a.sin());
            let at = |u: f64, v: f64| (c.0 + u * ca - v * sa, c.1 + u * sa + v * ca);
            let (b, g, rr) = roofs[rng.random_range(0..roofs.len())];
            // Two roof planes, one in shade.
            let lit = [
                at(-w / 2.0, 0.0),
                at(w / 2.0, 0.0),
                at(w / 2.0, d / 2.0),
                at(-w / 2.0, d / 2.0),
            ];
            let shaded = [
                at(-w / 2.0, -d / 2.0),
                at(w / 2.0, -d / 2.0),
                at(w / 2.0, 0.0),
                at(-w / 2.0, 0.0),
            ];
            imgproc::fill_convex_poly(
                img,
                &self.en_points(&lit),
                Scalar::new(b, g, rr, 0.0),
                imgproc::LINE_AA,
                SHIFT,
            )?;
            imgproc::fill_convex_poly(
                img,
                &self.en_points(&shaded),
                Scalar::new(b * 0.82, g * 0.82, rr * 0.82, 0.0),
                imgproc::LINE_AA,
                SHIFT,
            )?;
            let mut roof = Vector::<Vector<Point>>::new();
            roof.push(self.en_points(&[shaded[0], shaded[1], lit[2], lit[3]]));
            self.mark(material, &roof, Material::Roof)?;
        }
        Ok(())
    }
}

/// Even-odd point-in-polygon on east/north coordinates.
pub(crate) fn point_in_ring(p: (f64, f64), ring: &[(f64, f64)]) -> bool {
    let mut inside = false;
    let n = ring.len();
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (ring[i], ring[j]);
        if (a.1 > p.1) != (b.1 > p.1) && p.0 < (b.0 - a.0) * (p.1 - a.1) / (b.1 - a.1) + a.0 {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Low-frequency mottling (soil moisture, crop vigour) and fine grain,
/// added in strips so that a large texture needs little extra memory.
fn add_noise(img: &mut Mat, seed: u64) -> Result<(), CameraError> {
    core::set_rng_seed((seed as i32) ^ 0x5eed)?;
    let (w, h) = (img.cols(), img.rows());
    let small = Size::new((w / 32).max(2), (h / 32).max(2));
    let mut low = Mat::new_size_with_default(small, CV_32FC3, Scalar::all(0.0))?;
    core::randn(&mut low, &Scalar::all(0.0), &Scalar::all(7.0))?;
    let mut low_blur = Mat::default();
    imgproc::gaussian_blur_def(&low, &mut low_blur, Size::new(5, 5), 1.2)?;
    let (sx, sy) = (
        w as f64 / small.width as f64,
        h as f64 / small.height as f64,
    );
    let strip = 512;
    let mut y0 = 0;
    while y0 < h {
        let rows = strip.min(h - y0);
        // The slice of the upsampled mottling that covers this strip.
        let m = Mat::from_slice_2d(&[
            [sx, 0.0, 0.5 * sx - 0.5],
            [0.0, sy, 0.5 * sy - 0.5 - y0 as f64],
        ])?;
        let mut big = Mat::default();
        imgproc::warp_affine(
            &low_blur,
            &mut big,
            &m,
            Size::new(w, rows),
            imgproc::INTER_LINEAR,
            core::BORDER_REPLICATE,
            Scalar::all(0.0),
        )?;
        let mut grain = Mat::new_size_with_default(Size::new(w, rows), CV_32FC3, Scalar::all(0.0))?;
        core::randn(&mut grain, &Scalar::all(0.0), &Scalar::all(3.0))?;
        let rect = core::Rect::new(0, y0, w, rows);
        let mut roi = Mat::roi_mut(img, rect)?;
        let mut f = Mat::default();
        roi.convert_to_def(&mut f, CV_32FC3)?;
        let mut sum = Mat::default();
        core::add_def(&f, &big, &mut sum)?;
        let mut sum2 = Mat::default();
        core::add_def(&sum, &grain, &mut sum2)?;
        sum2.convert_to_def(&mut roi, CV_8UC3)?;
        y0 += rows;
    }
    Ok(())
}
