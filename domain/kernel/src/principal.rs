use std::fmt;

use crate::{BoothCode, CustomerId, LotCode};

/// What a caller may be (DOMAIN.md, "Roles and what each may do").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A traveller; the subject is the customer id.
    Customer,
    /// Staff of one airport booth (the `booth` claim).
    BoothStaff,
    /// A parking gate machine of one lot (the `lot` claim).
    Gate,
    /// A human operator: may do everything.
    Operator,
    /// Another service of the mesh (service-to-service calls).
    Service,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::BoothStaff => "booth_staff",
            Self::Gate => "gate",
            Self::Operator => "operator",
            Self::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Customer,
            Self::BoothStaff,
            Self::Gate,
            Self::Operator,
            Self::Service,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller of a use case. Built by the inbound adapter from a
/// verified token; every use case takes one and refuses what it may not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    subject: String,
    roles: Vec<Role>,
    booth: Option<BoothCode>,
    lot: Option<LotCode>,
}

impl Principal {
    /// A principal with the given roles. `booth` is only kept for booth staff.
    pub fn new(
        subject: impl Into<String>,
        roles: impl IntoIterator<Item = Role>,
        booth: Option<BoothCode>,
    ) -> Self {
        let mut roles: Vec<Role> = roles.into_iter().collect();
        roles.sort_unstable();
        roles.dedup();
        let booth = booth.filter(|_| roles.contains(&Role::BoothStaff));
        Self {
            subject: subject.into(),
            roles,
            booth,
            lot: None,
        }
    }

    /// The same principal bound to `lot`; kept only for gates.
    #[must_use]
    pub fn with_lot(mut self, lot: Option<LotCode>) -> Self {
        self.lot = lot.filter(|_| self.has(Role::Gate));
        self
    }

    pub fn customer(id: &CustomerId) -> Self {
        Self::new(id.as_str(), [Role::Customer], None)
    }

    pub fn booth_staff(subject: &str, booth: BoothCode) -> Self {
        Self::new(subject, [Role::BoothStaff], Some(booth))
    }

    /// The gate machine `subject` of `lot`.
    pub fn gate(subject: &str, lot: LotCode) -> Self {
        Self::new(subject, [Role::Gate], None).with_lot(Some(lot))
    }

    pub fn operator(subject: &str) -> Self {
        Self::new(subject, [Role::Operator], None)
    }

    pub fn service(subject: &str) -> Self {
        Self::new(subject, [Role::Service], None)
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Has any of `roles`, or is an operator (operators may do everything).
    pub fn may(&self, roles: &[Role]) -> bool {
        self.has(Role::Operator) || roles.iter().any(|r| self.has(*r))
    }

    pub fn is_operator(&self) -> bool {
        self.has(Role::Operator)
    }

    /// The customer this principal is, if it is one.
    pub fn customer_id(&self) -> Option<CustomerId> {
        if self.has(Role::Customer) {
            CustomerId::parse(&self.subject).ok()
        } else {
            None
        }
    }

    /// The booth a booth-staff principal works at.
    pub fn booth(&self) -> Option<&BoothCode> {
        self.booth.as_ref()
    }

    /// The lot a gate principal belongs to.
    pub fn lot(&self) -> Option<&LotCode> {
        self.lot.as_ref()
    }

    /// Operators act on every lot; a gate only on its own.
    pub fn acts_for_lot(&self, lot: &LotCode) -> bool {
        self.is_operator() || (self.has(Role::Gate) && self.lot.as_ref() == Some(lot))
    }

    /// Operators act on every booth; booth staff only on their own.
    pub fn acts_for_booth(&self, booth: &BoothCode) -> bool {
        self.is_operator() || (self.has(Role::BoothStaff) && self.booth.as_ref() == Some(booth))
    }

    /// Whether this principal may see or change something owned by `owner`:
    /// the owner itself, or an operator.
    pub fn owns_or_operates(&self, owner: &CustomerId) -> bool {
        self.is_operator() || self.customer_id().as_ref() == Some(owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_may_everything_others_only_their_roles() {
        let op = Principal::operator("ops");
        let gate = Principal::gate("gate-p1", LotCode::parse("P1").unwrap());
        assert!(op.may(&[Role::Gate]));
        assert!(gate.may(&[Role::Gate]));
        assert!(!gate.may(&[Role::Service, Role::Customer]));
    }

    #[test]
    fn booth_staff_act_for_their_booth_only() {
        let t1 = BoothCode::parse("ICN-T1").unwrap();
        let gmp = BoothCode::parse("GMP").unwrap();
        let staff = Principal::booth_staff("staff-icn-t1", t1.clone());
        assert!(staff.acts_for_booth(&t1));
        assert!(!staff.acts_for_booth(&gmp));
        assert!(Principal::operator("ops").acts_for_booth(&gmp));
        assert!(!Principal::gate("g", LotCode::parse("P1").unwrap()).acts_for_booth(&t1));
    }

    #[test]
    fn gates_act_for_their_lot_only() {
        let p1 = LotCode::parse("P1").unwrap();
        let p2 = LotCode::parse("P2").unwrap();
        let gate = Principal::gate("gate-p1", p1.clone());
        assert!(gate.acts_for_lot(&p1));
        assert!(!gate.acts_for_lot(&p2));
        assert!(Principal::operator("ops").acts_for_lot(&p2));
        // A lot claim means nothing without the gate role; a gate without one
        // acts for no lot.
        let staff = Principal::booth_staff("s", BoothCode::parse("GMP").unwrap())
            .with_lot(Some(p1.clone()));
        assert_eq!(staff.lot(), None);
        assert!(!staff.acts_for_lot(&p1));
        assert!(!Principal::new("g", [Role::Gate], None).acts_for_lot(&p1));
    }

    #[test]
    fn a_booth_claim_without_the_staff_role_is_dropped() {
        let t1 = BoothCode::parse("ICN-T1").unwrap();
        let p = Principal::new("x", [Role::Customer], Some(t1.clone()));
        assert_eq!(p.booth(), None);
        assert!(!p.acts_for_booth(&t1));
    }

    #[test]
    fn customers_own_only_their_things() {
        let alice = CustomerId::parse("alice").unwrap();
        let bob = CustomerId::parse("bob").unwrap();
        let p = Principal::customer(&alice);
        assert_eq!(p.customer_id(), Some(alice.clone()));
        assert!(p.owns_or_operates(&alice));
        assert!(!p.owns_or_operates(&bob));
        assert!(Principal::operator("ops").owns_or_operates(&bob));
        assert_eq!(Principal::service("payment").customer_id(), None);
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for r in [
            Role::Customer,
            Role::BoothStaff,
            Role::Gate,
            Role::Operator,
            Role::Service,
        ] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
