use domain_kernel::{CardDetails, Money};

use crate::payment::DeclineReason;
use crate::ports::{Acquirer, AcquirerUnavailable, Authorization};

/// Declined (DOMAIN.md, "Lifecycles").
pub const TEST_CARD_DECLINED: &str = "4000000000000002";
/// Declined for insufficient funds.
pub const TEST_CARD_INSUFFICIENT_FUNDS: &str = "4000000000009995";

/// The card network of the simulation: every Luhn-valid card pays except the two
/// test cards. Pure and instant; latency and failure injection belong to the
/// service's settings, not to the domain.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimulatedAcquirer;

impl SimulatedAcquirer {
    pub fn decide(card: &CardDetails) -> Authorization {
        match card.number.reveal() {
            TEST_CARD_DECLINED => Authorization::Declined(DeclineReason::CardDeclined),
            TEST_CARD_INSUFFICIENT_FUNDS => {
                Authorization::Declined(DeclineReason::InsufficientFunds)
            }
            _ => Authorization::Approved,
        }
    }
}

impl Acquirer for SimulatedAcquirer {
    async fn authorize(
        &self,
        card: &CardDetails,
        _amount: Money,
    ) -> Result<Authorization, AcquirerUnavailable> {
        Ok(Self::decide(card))
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    fn card(number: &str) -> CardDetails {
        CardDetails::parse(number, 12, 2030, "A", "VISA", date!(2026 - 11 - 22)).unwrap()
    }

    #[test]
    fn the_test_cards_decline_and_any_other_valid_card_pays() {
        assert_eq!(
            SimulatedAcquirer::decide(&card(TEST_CARD_DECLINED)),
            Authorization::Declined(DeclineReason::CardDeclined)
        );
        assert_eq!(
            SimulatedAcquirer::decide(&card("4000 0000 0000 9995")),
            Authorization::Declined(DeclineReason::InsufficientFunds)
        );
        assert_eq!(
            SimulatedAcquirer::decide(&card("5555555555554444")),
            Authorization::Approved
        );
    }
}
