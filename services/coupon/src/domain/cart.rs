//! The cart a coupon is checked against: items with a product, a category, a unit price and a
//! quantity, a shipping fee, one currency. Amounts are minor units; sums cannot overflow once a
//! cart is built.

use titan_kit::money::{Currency, MoneyError};

/// Most lines one cart may have.
pub const MAX_ITEMS: usize = 500;
/// Most units of one line.
pub const MAX_QUANTITY: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    #[error("the cart has no items")]
    Empty,
    #[error("the cart has more than {MAX_ITEMS} items")]
    TooManyItems,
    #[error("cart item {0} needs a product_id")]
    MissingProduct(usize),
    #[error("cart item {0} has quantity {1}; it must be 1 to {MAX_QUANTITY}")]
    Quantity(usize, u32),
    #[error("cart item {0} has a negative unit_price {1}")]
    NegativePrice(usize, i64),
    #[error("shipping_fee must not be negative, got {0}")]
    NegativeShipping(i64),
    #[error("the cart's amounts add up to more than can be represented")]
    Overflow,
    #[error("cart {0}")]
    Currency(#[from] MoneyError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartItem {
    pub product_id: String,
    pub category_id: String,
    pub unit_price: i64,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cart {
    items: Vec<CartItem>,
    shipping_fee: i64,
    currency: Currency,
    subtotal: i64,
}

impl Cart {
    pub fn new(items: Vec<CartItem>, shipping_fee: i64, currency: &str) -> Result<Self, CartError> {
        let currency = Currency::parse(currency.trim())?;
        if items.is_empty() {
            return Err(CartError::Empty);
        }
        if items.len() > MAX_ITEMS {
            return Err(CartError::TooManyItems);
        }
        if shipping_fee < 0 {
            return Err(CartError::NegativeShipping(shipping_fee));
        }
        let mut subtotal: i64 = 0;
        for (i, item) in items.iter().enumerate() {
            if item.product_id.trim().is_empty() {
                return Err(CartError::MissingProduct(i));
            }
            if !(1..=MAX_QUANTITY).contains(&item.quantity) {
                return Err(CartError::Quantity(i, item.quantity));
            }
            if item.unit_price < 0 {
                return Err(CartError::NegativePrice(i, item.unit_price));
            }
            subtotal = item
                .unit_price
                .checked_mul(i64::from(item.quantity))
                .and_then(|line| subtotal.checked_add(line))
                .ok_or(CartError::Overflow)?;
        }
        subtotal
            .checked_add(shipping_fee)
            .ok_or(CartError::Overflow)?;
        Ok(Self {
            items,
            shipping_fee,
            currency,
            subtotal,
        })
    }

    pub fn items(&self) -> &[CartItem] {
        &self.items
    }

    pub fn shipping_fee(&self) -> i64 {
        self.shipping_fee
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The items' total, without shipping.
    pub fn subtotal(&self) -> i64 {
        self.subtotal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(price: i64, quantity: u32) -> CartItem {
        CartItem {
            product_id: "p".into(),
            category_id: "c".into(),
            unit_price: price,
            quantity,
        }
    }

    #[test]
    fn carts_are_checked() {
        let cart = Cart::new(vec![item(1999, 2), item(500, 1)], 700, "USD").expect("valid");
        assert_eq!(cart.subtotal(), 4498);
        assert_eq!(Cart::new(vec![], 0, "USD"), Err(CartError::Empty));
        assert_eq!(
            Cart::new(vec![item(10, 0)], 0, "USD"),
            Err(CartError::Quantity(0, 0))
        );
        assert_eq!(
            Cart::new(vec![item(-1, 1)], 0, "USD"),
            Err(CartError::NegativePrice(0, -1))
        );
        assert_eq!(
            Cart::new(vec![item(i64::MAX, 2)], 0, "USD"),
            Err(CartError::Overflow)
        );
        assert!(matches!(
            Cart::new(vec![item(1, 1)], 0, "usd"),
            Err(CartError::Currency(_))
        ));
    }
}
