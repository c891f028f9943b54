//! The RULEBOOK's enumerated terms that events, meters and settings all speak of: sender
//! roles and channels ("Vocabulary"), and how a count beyond a free tier or an allowance
//! rounds (CR-8, PL-1, EV-2). A leaf: it uses no other module of the core.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderRole {
    Consumer,
    Agent,
    Bot,
    Proactive,
    System,
}

impl SenderRole {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "consumer" => SenderRole::Consumer,
            "agent" => SenderRole::Agent,
            "bot" => SenderRole::Bot,
            "proactive" => SenderRole::Proactive,
            "system" => SenderRole::System,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SenderRole::Consumer => "consumer",
            SenderRole::Agent => "agent",
            SenderRole::Bot => "bot",
            SenderRole::Proactive => "proactive",
            SenderRole::System => "system",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Web,
    Sms,
    Whatsapp,
    Facebook,
    Email,
    Apple,
    Other,
}

impl Channel {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "web" => Channel::Web,
            "sms" => Channel::Sms,
            "whatsapp" => Channel::Whatsapp,
            "facebook" => Channel::Facebook,
            "email" => Channel::Email,
            "apple" => Channel::Apple,
            "other" => Channel::Other,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Facebook => "facebook",
            Channel::Email => "email",
            Channel::Apple => "apple",
            Channel::Other => "other",
        }
    }
}

/// CR-8 and PL-1 rounding of a count beyond a free tier or allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    ProRata,
    CeilBlock,
    FloorBlock,
}
