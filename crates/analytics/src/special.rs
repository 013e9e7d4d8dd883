//! Special functions the models need: the log-gamma function (Lanczos, g = 7, nine terms:
//! about 15 significant digits for positive arguments) and the hypergeometric ₂F₁.

use std::f64::consts::PI;

const LANCZOS_G: f64 = 7.0;
const LANCZOS: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// ln Γ(x) for x > 0 (reflection below ½); NaN for x ≤ 0 at the poles.
pub fn ln_gamma(x: f64) -> f64 {
    if x < 0.5 {
        // Γ(x) Γ(1 − x) = π / sin(πx)
        return (PI / (PI * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = LANCZOS[0];
    for (index, coefficient) in LANCZOS.iter().enumerate().skip(1) {
        sum += coefficient / (x + index as f64);
    }
    let t = x + LANCZOS_G + 0.5;
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The digamma function ψ(x) = d/dx ln Γ(x) for x > 0: the recurrence ψ(x) = ψ(x + 1) − 1/x
/// up to 10, then the asymptotic series (error below 1e-14 there).
pub fn digamma(x: f64) -> f64 {
    let mut x = x;
    let mut shift = 0.0;
    while x < 10.0 {
        shift -= 1.0 / x;
        x += 1.0;
    }
    let inverse = 1.0 / x;
    let inverse_squared = inverse * inverse;
    let series = inverse_squared
        * (1.0 / 12.0
            - inverse_squared
                * (1.0 / 120.0
                    - inverse_squared
                        * (1.0 / 252.0 - inverse_squared * (1.0 / 240.0 - inverse_squared / 132.0))));
    shift + x.ln() - 0.5 * inverse - series
}

/// The trigamma function ψ₁(x) = d²/dx² ln Γ(x) for x > 0: the recurrence ψ₁(x) = ψ₁(x + 1)
/// + 1/x² up to 10, then the asymptotic series.
pub fn trigamma(x: f64) -> f64 {
    let mut x = x;
    let mut shift = 0.0;
    while x < 10.0 {
        shift += 1.0 / (x * x);
        x += 1.0;
    }
    let inverse = 1.0 / x;
    let inverse_squared = inverse * inverse;
    let series = inverse
        + inverse_squared / 2.0
        + inverse
            * inverse_squared
            * (1.0 / 6.0
                - inverse_squared * (1.0 / 30.0 - inverse_squared * (1.0 / 42.0 - inverse_squared / 30.0)));
    shift + series
}

/// The Gauss hypergeometric function ₂F₁(a, b; c; z) for 0 ≤ z < 1 by its power series,
/// summed until a term no longer moves the sum; NaN when 20,000 terms do not get there.
pub fn hypergeometric_2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 0..20_000 {
        let k = f64::from(k);
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        if term.abs() <= f64::EPSILON * sum.abs() {
            return sum;
        }
    }
    f64::NAN
}

/// ₂F₁(a, b; c; z) at several z at once: `values` holds the z (each in 0 ≤ z < 1) and gets
/// the sums; a value whose series has not settled after 20,000 terms becomes NaN, as in
/// [`hypergeometric_2f1`].
pub fn hypergeometric_2f1_many(a: f64, b: f64, c: f64, values: &mut [f64]) {
    const AT_ONCE: usize = 32;
    for chunk in values.chunks_mut(AT_ONCE) {
        let mut powers = [1.0; AT_ONCE];
        let mut sums = [1.0; AT_ONCE];
        let mut settled = [false; AT_ONCE];
        let count = chunk.len();
        let mut coefficient = 1.0;
        let mut open = count;
        for k in 0..20_000 {
            let k = f64::from(k);
            coefficient *= (a + k) * (b + k) / ((c + k) * (k + 1.0));
            for index in 0..count {
                if settled[index] {
                    continue;
                }
                powers[index] *= chunk[index];
                let term = coefficient * powers[index];
                sums[index] += term;
                if term.abs() <= f64::EPSILON * sums[index].abs() {
                    settled[index] = true;
                    open -= 1;
                }
            }
            if open == 0 {
                break;
            }
        }
        for index in 0..count {
            chunk[index] = if settled[index] { sums[index] } else { f64::NAN };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
        assert!(close(ln_gamma(1.0), 0.0));
        assert!(close(ln_gamma(2.0), 0.0));
        assert!(close(ln_gamma(0.5), PI.sqrt().ln()));
        // ln(10!) = ln(3,628,800)
        assert!(close(ln_gamma(11.0), 3_628_800_f64.ln()));
        // scipy.special.gammaln(0.243) and gammaln(123.456)
        assert!(close(ln_gamma(0.243), 1.3180435846996699), "{}", ln_gamma(0.243));
        assert!(close(ln_gamma(123.456), 469.6055471299295), "{}", ln_gamma(123.456));
        // ₂F₁(1, 1; 2; z) = −ln(1 − z) / z
        assert!(close(hypergeometric_2f1(1.0, 1.0, 2.0, 0.5), 2.0 * 2_f64.ln()));
        let mut many = [0.1, 0.5, 0.0, 0.9];
        hypergeometric_2f1_many(1.3, 2.2, 3.4, &mut many);
        for (z, found) in [0.1, 0.5, 0.0, 0.9].into_iter().zip(many) {
            assert!(close(found, hypergeometric_2f1(1.3, 2.2, 3.4, z)), "z = {z}: {found}");
        }
        // ψ₁(1) = π²/6; scipy.special.polygamma(1, 0.243) and polygamma(1, 123.456)
        assert!(close(trigamma(1.0), PI * PI / 6.0), "{}", trigamma(1.0));
        assert!(close(trigamma(0.243), 18.14177978709583), "{}", trigamma(0.243));
        assert!(close(trigamma(123.456), 0.008132945834278194), "{}", trigamma(123.456));
        // ψ(1) = −γ; scipy.special.digamma(0.243) and digamma(123.456)
        assert!(close(digamma(1.0), -0.577_215_664_901_532_9), "{}", digamma(1.0));
        assert!(close(digamma(0.243), -4.351093864423211), "{}", digamma(0.243));
        assert!(close(digamma(123.456), 4.811829323828985), "{}", digamma(123.456));
    }
}
