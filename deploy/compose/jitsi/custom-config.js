// Meetgate's hardening of Jitsi Meet's config.js. The web image appends this file to the
// config.js it generates (mounted at /config/custom-config.js), so every line here wins.
// Each setting says why. Checked against the jitsi/web release pinned in docker-compose.yml;
// re-check when you move the pin. `meetgate doctor` fetches the resulting config.js and fails
// if it names a third-party host or a guest domain.

// No guest (anonymous) domain: every participant logs in with a Meetgate ticket.
delete config.hosts.anonymousdomain;

// The master switch: gravatar, callstats and other outside requests off.
config.disableThirdPartyRequests = true;

// Avatars are never fetched from an outside service by e-mail hash.
config.gravatar = { disabled: true };

// No analytics of any kind (amplitude, Google, matomo, rtcstats, outside scripts).
config.analytics = { disabled: true, rtcstatsEnabled: false, scriptURLs: [] };
config.callStatsID = '';
config.feedbackPercentage = 0;

// Peer-to-peer is off (jitsi.env: ENABLE_P2P=0, it would reveal attendees' addresses to each
// other). Should someone turn it on, the client must still never fall back to Jitsi's public
// STUN server: our own coturn answers STUN on the same host name, port 3478.
config.p2p = config.p2p || {};
config.p2p.stunServers = [ { urls: 'stun:' + window.location.hostname + ':3478' } ];

// GIF search (giphy), Dropbox, calendars, YouTube shared video, the hosted whiteboard backend,
// dial-in numbers and invitation services all live with third parties.
config.giphy = { enabled: false };
delete config.dropbox;
config.enableCalendarIntegration = false;
delete config.googleApiApplicationClientID;
delete config.microsoftApiApplicationClientID;
config.whiteboard = { enabled: false };
delete config.dialInNumbersUrl;
delete config.dialInConfCodeUrl;
delete config.dialOutAuthUrl;
delete config.dialOutCodesUrl;
delete config.inviteServiceUrl;
delete config.peopleSearchUrl;
delete config.brandingDataUrl;
delete config.dynamicBrandingUrl;
delete config.chromeExtensionBanner;
delete config.salesforceUrl;
delete config.etherpad_base;
config.fileRecordingsEnabled = false;
config.recordingService = { enabled: false, sharingEnabled: false };
config.liveStreamingEnabled = false;
config.liveStreaming = { enabled: false };
config.transcription = { enabled: false };
config.transcribingEnabled = false;

// The toolbar offers only what stays on this server. Shared video has no off switch: a shared
// YouTube link makes every participant's browser load YouTube's player, so its button is not
// listed. Also left out: recording and live streaming (Jibri, YouTube, Dropbox), subtitles
// (transcription services), the shared document (etherpad), the whiteboard, feedback, help and
// app downloads (outside pages), Salesforce, embedding and Jitsi's invite dialog (Meetgate
// invites people), and the profile (the name comes from the ticket). A button a newer Jitsi
// adds stays hidden until it is added here.
config.toolbarButtons = [
    'camera',
    'chat',
    'desktop',
    'filmstrip',
    'fullscreen',
    'hangup',
    'microphone',
    'mute-everyone',
    'mute-video-everyone',
    'noisesuppression',
    'participants-pane',
    'raisehand',
    'reactions',
    'security',
    'select-background',
    'settings',
    'shareaudio',
    'shortcuts',
    'stats',
    'tileview',
    'toggle-camera',
    'videoquality'
];
// Links to outside help, app downloads and legal pages: none.
config.deploymentUrls = {};
config.legalUrls = {};
config.disableDeepLinking = true;

// Invitations are Meetgate's: Jitsi's invite dialog would hand out the bare room link.
config.disableInviteFunctions = true;

// Names come from the ticket (server-side lock: mod_muc_displayname). These only keep the
// interface from offering an edit that the server would refuse anyway.
config.readOnlyName = true;
config.disableProfile = true;
config.prejoinConfig = { enabled: false };
config.requireDisplayName = false;

// Nothing about past rooms is kept in the browser's local storage.
config.doNotStoreRoom = true;

// The welcome page would let a visitor start any room name; Meetgate is the front page.
config.welcomePage = { disabled: true };
