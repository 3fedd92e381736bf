-- A join through an invite in one atomic step (invite_join.lua and the parts it calls loaded
-- before this): see join_invite there for the keys, arguments and answers.
return join_invite(KEYS, ARGV)
