//! `Emit`: what one call of an operator's function produces (IoTPy's value, `_no_value`, `_multivalue`).

/// The result of one function call: one element, none, or several.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Emit<T> {
    /// Emit nothing (IoTPy's `_no_value`, a script's `()`).
    #[default]
    Skip,
    /// Emit one element.
    One(T),
    /// Emit each entry as its own element (IoTPy's `_multivalue`).
    Many(Vec<T>),
}

impl<T> Emit<T> {
    /// Appends what this result emits to `out`.
    #[inline]
    pub fn push_into(self, out: &mut Vec<T>) {
        match self {
            Emit::Skip => {}
            Emit::One(x) => out.push(x),
            Emit::Many(xs) => out.extend(xs),
        }
    }

    /// Applies `f` to every element this result emits.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> Emit<U> {
        match self {
            Emit::Skip => Emit::Skip,
            Emit::One(x) => Emit::One(f(x)),
            Emit::Many(xs) => Emit::Many(xs.into_iter().map(f).collect()),
        }
    }

    /// How many elements this result emits.
    pub fn len(&self) -> usize {
        match self {
            Emit::Skip => 0,
            Emit::One(_) => 1,
            Emit::Many(xs) => xs.len(),
        }
    }

    /// True when this result emits nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> From<T> for Emit<T> {
    #[inline]
    fn from(x: T) -> Emit<T> {
        Emit::One(x)
    }
}

impl<T> From<Option<T>> for Emit<T> {
    #[inline]
    fn from(x: Option<T>) -> Emit<T> {
        x.map_or(Emit::Skip, Emit::One)
    }
}

/// What an operator's closure may return: an element (emitted), or an [`Emit`].
pub trait IntoEmit<T> {
    /// Converts into an [`Emit`].
    fn into_emit(self) -> Emit<T>;
}

impl<T: crate::operator::Element> IntoEmit<T> for T {
    #[inline]
    fn into_emit(self) -> Emit<T> {
        Emit::One(self)
    }
}

impl<T> IntoEmit<T> for Emit<T> {
    #[inline]
    fn into_emit(self) -> Emit<T> {
        self
    }
}

/// Builds an `Emit::Many` (IoTPy's `_multivalue`).
pub fn multivalue<T>(xs: Vec<T>) -> Emit<T> {
    Emit::Many(xs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_pushes_zero_one_or_many() {
        let mut v = vec![];
        Emit::<i64>::Skip.push_into(&mut v);
        Emit::One(1).push_into(&mut v);
        multivalue(vec![2, 3]).push_into(&mut v);
        assert_eq!(v, vec![1, 2, 3]);
    }

    #[test]
    fn options_convert_to_skip_or_one() {
        assert_eq!(Emit::<i64>::from(None), Emit::Skip);
        assert_eq!(Emit::<i64>::from(Some(4)), Emit::One(4));
    }
}
